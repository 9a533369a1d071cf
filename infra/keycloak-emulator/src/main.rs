//! `keycloak-emulator --realm <file> [--host 127.0.0.1] [--port 8080]`

use std::process::ExitCode;

use keycloak_emulator::Emulator;

const USAGE: &str = "usage: keycloak-emulator --realm <realm-export.json> [--realm <more.json>] [--host 127.0.0.1] [--port 8080]";

#[tokio::main]
async fn main() -> ExitCode {
    let mut realms = Vec::new();
    let mut host = "127.0.0.1".to_owned();
    let mut port = "8080".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--realm" | "--host" | "--port" => args.next(),
            _ => None,
        };
        match (arg.as_str(), value) {
            ("--realm", Some(v)) => realms.push(v),
            ("--host", Some(v)) => host = v,
            ("--port", Some(v)) => port = v,
            _ => {
                eprintln!("keycloak-emulator: unexpected argument {arg}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    if realms.is_empty() {
        eprintln!("keycloak-emulator: --realm is required\n{USAGE}");
        return ExitCode::from(2);
    }
    let mut exports = Vec::new();
    for path in &realms {
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {path}: {e}"))
            .and_then(|t| serde_json::from_str(&t).map_err(|e| format!("{path} is not JSON: {e}")));
        match parsed {
            Ok(v) => exports.push(v),
            Err(e) => {
                eprintln!("keycloak-emulator: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let emu = match Emulator::new(exports) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("keycloak-emulator: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = format!("{host}:{port}");
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("keycloak-emulator: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    // Tests start it with --port 0 and read the real port from this line.
    println!(
        "keycloak-emulator listening on http://{bound} (realms: {})",
        emu.realm_names().join(", ")
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match keycloak_emulator::serve(listener, emu, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keycloak-emulator: {e}");
            ExitCode::from(1)
        }
    }
}
