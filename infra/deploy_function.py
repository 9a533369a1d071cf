#!/usr/bin/env python3
"""Deploy one function's new code with `cargo lambda deploy`, into a stack `sam deploy` created.

    deploy_function.py FN --stack STACK      (make deploy-function FN=login-sync STACK=...)

The function is the one the stack's `<LogicalId>Name` output names (FN is its binary, e.g.
`login-sync` for LoginSyncFunction). Its role, environment, timeout, memory, runtime and tracing
are read from that function as the stack configured it and handed to `cargo lambda deploy`
unchanged, so a code push never drifts the configuration from the template; the architecture is
the binary's (arm64, from `make lambda-artifacts`), and must be the function's. Creating
functions is the stack's job (role, log group, alarms, permissions): a name the stack does not
output is refused. AWS_ENDPOINT_URL (moto in tests) and the usual AWS credentials apply.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
ELF_ARM64 = 183  # e_machine of an aarch64 ELF binary


def logical_id(binary):
    """`login-sync` -> `LoginSyncFunction` (the template's convention)."""
    return "".join(part.capitalize() for part in binary.split("-")) + "Function"


def binary_architecture(path):
    header = path.read_bytes()[:20]
    machine = int.from_bytes(header[18:20], "little")
    return "arm64" if machine == ELF_ARM64 else "x86_64"


def function_name(cfn, stack, binary):
    outputs = {o["OutputKey"]: o["OutputValue"]
               for o in cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])}
    key = f"{logical_id(binary)}Name"
    if key not in outputs:
        names = sorted(k.removesuffix("FunctionName") for k in outputs if k.endswith("FunctionName"))
        sys.exit(f"deploy-function: stack {stack} has no output {key} (functions: {', '.join(names)})")
    return outputs[key]


def deploy_command(name, binary, config, env_file):
    cmd = ["cargo", "lambda", "deploy", name, "--binary-name", binary,
           "--role", config["Role"], "--runtime", config["Runtime"],
           "--timeout", str(config["Timeout"]), "--memory", str(config["MemorySize"]),
           "--env-file", env_file, "--output-format", "json"]
    tracing = config.get("TracingConfig", {}).get("Mode")
    if tracing:
        cmd += ["--tracing", tracing]
    if os.environ.get("AWS_ENDPOINT_URL"):
        cmd += ["--endpoint-url", os.environ["AWS_ENDPOINT_URL"]]
    return cmd


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("binary", help="the function's binary, e.g. login-sync")
    p.add_argument("--stack", required=True)
    a = p.parse_args()
    if not re.fullmatch(r"[a-z][a-z0-9-]*", a.binary):
        sys.exit(f"deploy-function: {a.binary!r} is not a function binary name")
    bootstrap = ROOT / "target" / "lambda" / a.binary / "bootstrap"
    if not bootstrap.exists():
        sys.exit(f"deploy-function: {bootstrap} is missing; run `make lambda-artifacts`")
    name = function_name(boto3.client("cloudformation"), a.stack, a.binary)
    config = boto3.client("lambda").get_function_configuration(FunctionName=name)
    built, deployed = binary_architecture(bootstrap), config.get("Architectures", ["x86_64"])[0]
    if built != deployed:
        sys.exit(f"deploy-function: {bootstrap} is {built}, the function {name} runs on {deployed}")
    env = config.get("Environment", {}).get("Variables", {})
    with tempfile.NamedTemporaryFile("w", suffix=".env") as env_file:
        env_file.write("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
        env_file.flush()
        subprocess.run(deploy_command(name, a.binary, config, env_file.name), cwd=ROOT, check=True)
    print(f"deploy-function: {a.binary} -> {name} ({deployed}, role and environment unchanged)")


if __name__ == "__main__":
    main()
