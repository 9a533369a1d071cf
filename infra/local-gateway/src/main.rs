//! `local-gateway --template template.yaml [--host 127.0.0.1] [--port 3000]
//!                [--lambda-url http://127.0.0.1:9000] [--parameter Name=Value]...`

use std::collections::HashMap;
use std::process::ExitCode;

const USAGE: &str = "usage: local-gateway --template <template.yaml> [--host 127.0.0.1] [--port 3000] [--lambda-url http://127.0.0.1:9000] [--parameter Name=Value]...";

#[tokio::main]
async fn main() -> ExitCode {
    let mut template = None;
    let (mut host, mut port, mut lambda_url) = (
        "127.0.0.1".to_owned(),
        "3000".to_owned(),
        "http://127.0.0.1:9000".to_owned(),
    );
    let mut params = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--template", Some(v)) => template = Some(v),
            ("--host", Some(v)) => host = v,
            ("--port", Some(v)) => port = v,
            ("--lambda-url", Some(v)) => lambda_url = v,
            ("--parameter", Some(v)) => match v.split_once('=') {
                Some((k, val)) => {
                    params.insert(k.to_owned(), val.to_owned());
                }
                None => {
                    eprintln!("local-gateway: --parameter takes Name=Value\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("local-gateway: unexpected argument {arg}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(template) = template else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let api = match std::fs::read_to_string(&template)
        .map_err(|e| e.to_string())
        .and_then(|y| local_gateway::template::load(&y, &params))
    {
        Ok(api) => api,
        Err(e) => {
            eprintln!("local-gateway: {template}: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(format!("{host}:{port}")).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("local-gateway: cannot listen on {host}:{port}: {e}");
            return ExitCode::from(1);
        }
    };
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!(
        "local-gateway listening on http://{bound} ({} routes, functions at {lambda_url})",
        api.routes.len()
    );
    let gateway = local_gateway::Gateway::new(api, &lambda_url);
    match local_gateway::serve(listener, gateway).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("local-gateway: {e}");
            ExitCode::from(1)
        }
    }
}
