//! Reading `template.yaml` the way SAM does for an HTTP API: every `HttpApi` event of every
//! `AWS::Serverless::Function` becomes a route to that function, with the API's JWT authorizer
//! unless the event says `Authorizer: NONE`. CloudFormation short tags (`!Ref`, `!Sub`,
//! `!GetAtt`, `!If`, `!Join`, `!Select`) are resolved against the template's parameters.

use std::collections::HashMap;

use serde_yaml_ng::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub method: String,
    /// The path template, e.g. `/auth/sessions/{sid}` or `/admin/{proxy+}`.
    pub path: String,
    /// The function's name for the Lambda Invoke API (its binary).
    pub function: String,
    pub authorizer: Option<String>,
    pub timeout_secs: u64,
}

impl Route {
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct JwtAuthorizer {
    pub issuer: String,
    pub audience: Vec<String>,
}

/// A route's throttling (`ThrottlingRateLimit` requests per second, `ThrottlingBurstLimit` at once).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Throttle {
    pub rate: f64,
    pub burst: f64,
}

#[derive(Clone, Debug, Default)]
pub struct Api {
    pub routes: Vec<Route>,
    pub authorizers: HashMap<String, JwtAuthorizer>,
    /// The stage's `DefaultRouteSettings` throttling.
    pub default_throttle: Option<Throttle>,
    /// `RouteSettings` throttling by route key (`POST /auth/login`).
    pub route_throttles: HashMap<String, Throttle>,
    /// `CorsConfiguration`, when it names an origin.
    pub cors: Option<crate::cors::Cors>,
}

impl Api {
    /// The throttling that applies to a route: its own settings, else the stage's.
    pub fn throttle(&self, route_key: &str) -> Option<Throttle> {
        self.route_throttles
            .get(route_key)
            .copied()
            .or(self.default_throttle)
    }
}

fn throttle_of(settings: &Value) -> Option<Throttle> {
    let number = |k: &str| get(settings, k).and_then(|v| text(v).parse::<f64>().ok());
    Some(Throttle {
        rate: number("ThrottlingRateLimit")?,
        burst: number("ThrottlingBurstLimit")?,
    })
}

fn cors_of(c: &Value) -> Option<crate::cors::Cors> {
    let list = |k: &str| -> Vec<String> {
        match get(c, k) {
            Some(Value::Sequence(s)) => s.iter().map(text).filter(|v| !v.is_empty()).collect(),
            _ => Vec::new(),
        }
    };
    let cors = crate::cors::Cors {
        allow_origins: list("AllowOrigins"),
        allow_methods: list("AllowMethods"),
        allow_headers: list("AllowHeaders"),
        expose_headers: list("ExposeHeaders"),
        max_age: get(c, "MaxAge").and_then(|v| text(v).parse().ok()),
    };
    (!cors.allow_origins.is_empty()).then_some(cors)
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping()?.get(Value::String(key.to_owned()))
}

/// Resolve intrinsic functions (short tags or `Fn::` / `Ref` maps) to plain values.
fn resolve(v: &Value, params: &HashMap<String, String>) -> Value {
    match v {
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            let tag = tag.trim_start_matches('!');
            intrinsic(tag, &t.value, params)
        }
        Value::Mapping(m) if m.len() == 1 => {
            let (k, inner) = m
                .iter()
                .next()
                .map(|(k, v)| (k.as_str().unwrap_or(""), v))
                .unwrap_or(("", v));
            match k {
                "Ref" => intrinsic("Ref", inner, params),
                k if k.starts_with("Fn::") => intrinsic(&k[4..], inner, params),
                _ => Value::Mapping(
                    m.iter()
                        .map(|(k, v)| (k.clone(), resolve(v, params)))
                        .collect(),
                ),
            }
        }
        Value::Mapping(m) => Value::Mapping(
            m.iter()
                .map(|(k, v)| (k.clone(), resolve(v, params)))
                .collect(),
        ),
        Value::Sequence(s) => Value::Sequence(s.iter().map(|v| resolve(v, params)).collect()),
        other => other.clone(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

fn intrinsic(name: &str, arg: &Value, params: &HashMap<String, String>) -> Value {
    match name {
        "Ref" => {
            let key = text(arg);
            Value::String(params.get(&key).cloned().unwrap_or(key))
        }
        "Sub" => {
            let (template, vars) = match arg {
                Value::Sequence(s) if !s.is_empty() => (text(&s[0]), s.get(1).cloned()),
                other => (text(other), None),
            };
            let mut scope = params.clone();
            if let Some(Value::Mapping(m)) = vars {
                for (k, v) in m {
                    scope.insert(text(&k), text(&resolve(&v, params)));
                }
            }
            let mut out = String::new();
            let mut rest = template.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    out.push_str(&rest[start..]);
                    rest = "";
                    break;
                };
                let var = &after[..end];
                out.push_str(&scope.get(var).cloned().unwrap_or_else(|| var.to_owned()));
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            Value::String(out)
        }
        "GetAtt" => Value::String(match arg {
            Value::Sequence(s) => s.iter().map(text).collect::<Vec<_>>().join("."),
            other => text(other),
        }),
        "Join" => match arg {
            Value::Sequence(s) if s.len() == 2 => {
                let sep = text(&s[0]);
                let items = match resolve(&s[1], params) {
                    Value::Sequence(items) => items.iter().map(text).collect::<Vec<_>>(),
                    _ => vec![],
                };
                Value::String(items.join(&sep))
            }
            _ => Value::Null,
        },
        "Select" => match arg {
            Value::Sequence(s) if s.len() == 2 => {
                let i = text(&resolve(&s[0], params)).parse::<usize>().unwrap_or(0);
                match resolve(&s[1], params) {
                    Value::Sequence(items) => items.get(i).cloned().unwrap_or(Value::Null),
                    _ => Value::Null,
                }
            }
            _ => Value::Null,
        },
        "Split" => match arg {
            Value::Sequence(s) if s.len() == 2 => {
                let sep = text(&s[0]);
                let whole = text(&resolve(&s[1], params));
                Value::Sequence(
                    whole
                        .split(sep.as_str())
                        .map(|p| Value::String(p.to_owned()))
                        .collect(),
                )
            }
            _ => Value::Null,
        },
        "If" => match arg {
            // Conditions are not evaluated locally: the "true" branch is taken.
            Value::Sequence(s) if s.len() == 3 => resolve(&s[1], params),
            _ => Value::Null,
        },
        _ => resolve(arg, params),
    }
}

/// Parse the template; `overrides` replace parameter defaults (like `--parameter-overrides`).
pub fn load(yaml: &str, overrides: &HashMap<String, String>) -> Result<Api, String> {
    let doc: Value = serde_yaml_ng::from_str(yaml).map_err(|e| format!("template.yaml: {e}"))?;
    let mut params: HashMap<String, String> = HashMap::new();
    if let Some(Value::Mapping(ps)) = get(&doc, "Parameters") {
        for (k, v) in ps {
            if let Some(d) = get(v, "Default") {
                params.insert(text(k), text(d));
            }
        }
    }
    params.extend(overrides.clone());
    params
        .entry("AWS::Region".into())
        .or_insert_with(|| "us-east-1".into());
    params
        .entry("AWS::AccountId".into())
        .or_insert_with(|| "123456789012".into());
    params
        .entry("AWS::StackName".into())
        .or_insert_with(|| "local".into());
    let globals_timeout = get(&doc, "Globals")
        .and_then(|g| get(g, "Function"))
        .and_then(|f| get(f, "Timeout"))
        .and_then(Value::as_u64);
    let resources = get(&doc, "Resources")
        .and_then(Value::as_mapping)
        .ok_or("template.yaml has no Resources")?;
    let mut api = Api::default();
    let mut default_authorizer = None;
    for (_, res) in resources {
        if get(res, "Type").and_then(Value::as_str) != Some("AWS::Serverless::HttpApi") {
            continue;
        }
        let props = resolve(get(res, "Properties").unwrap_or(&Value::Null), &params);
        api.default_throttle = get(&props, "DefaultRouteSettings").and_then(throttle_of);
        if let Some(Value::Mapping(routes)) = get(&props, "RouteSettings") {
            for (key, settings) in routes {
                if let Some(t) = throttle_of(settings) {
                    api.route_throttles.insert(text(key), t);
                }
            }
        }
        api.cors = get(&props, "CorsConfiguration").and_then(cors_of);
        let auth = get(&props, "Auth");
        default_authorizer = auth.and_then(|a| get(a, "DefaultAuthorizer")).map(text);
        if let Some(Value::Mapping(auths)) = auth.and_then(|a| get(a, "Authorizers")) {
            for (name, a) in auths {
                let Some(jwt) = get(a, "JwtConfiguration") else {
                    continue;
                };
                let audience = match get(jwt, "audience") {
                    Some(Value::Sequence(s)) => s.iter().map(text).collect(),
                    Some(v) => vec![text(v)],
                    None => vec![],
                };
                api.authorizers.insert(
                    text(name),
                    JwtAuthorizer {
                        issuer: get(jwt, "issuer").map(text).unwrap_or_default(),
                        audience,
                    },
                );
            }
        }
    }
    for (logical_id, res) in resources {
        if get(res, "Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
            continue;
        }
        let function = binary_of(&text(logical_id));
        let props = resolve(get(res, "Properties").unwrap_or(&Value::Null), &params);
        let timeout = get(&props, "Timeout")
            .and_then(Value::as_u64)
            .or(globals_timeout)
            .unwrap_or(3);
        let Some(Value::Mapping(events)) = get(&props, "Events") else {
            continue;
        };
        for (_, event) in events {
            if get(event, "Type").and_then(Value::as_str) != Some("HttpApi") {
                continue;
            }
            let Some(p) = get(event, "Properties") else {
                continue;
            };
            let authorizer = match get(p, "Auth").and_then(|a| get(a, "Authorizer")).map(text) {
                Some(a) if a == "NONE" => None,
                Some(a) => Some(a),
                None => default_authorizer.clone(),
            };
            api.routes.push(Route {
                method: get(p, "Method")
                    .map(text)
                    .unwrap_or_else(|| "ANY".into())
                    .to_uppercase(),
                path: get(p, "Path").map(text).unwrap_or_else(|| "/".into()),
                function: function.clone(),
                authorizer,
                timeout_secs: timeout.min(30),
            });
        }
    }
    Ok(api)
}

/// The cargo binary of a function: its logical id without `Function`, in kebab case
/// (`LoginSyncFunction` is `login-sync`), the convention the Makefile's `build-%Function` follows.
pub fn binary_of(logical_id: &str) -> String {
    let name = logical_id.strip_suffix("Function").unwrap_or(logical_id);
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The route for a request, by API Gateway's precedence: exact paths beat paths with parameters,
/// which beat greedy `{proxy+}` paths; a method beats `ANY`. Returns the path parameters too.
pub fn match_route<'a>(
    api: &'a Api,
    method: &str,
    path: &str,
) -> Option<(&'a Route, HashMap<String, String>)> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    /// (kind, literal segments, method is not ANY): higher wins.
    type Rank = (u8, usize, u8);
    let mut best: Option<(Rank, &Route, HashMap<String, String>)> = None;
    for route in &api.routes {
        if route.method != "ANY" && route.method != method {
            continue;
        }
        let Some((kind, literal, params)) = path_match(&route.path, &segments) else {
            continue;
        };
        let rank = (kind, literal, u8::from(route.method != "ANY"));
        if best.as_ref().is_none_or(|(r, _, _)| rank > *r) {
            best = Some((rank, route, params));
        }
    }
    best.map(|(_, r, p)| (r, p))
}

/// (2 exact / 1 with parameters / 0 greedy, literal segments, parameters)
fn path_match(template: &str, segments: &[&str]) -> Option<(u8, usize, HashMap<String, String>)> {
    let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let mut params = HashMap::new();
    let mut literal = 0;
    let mut kind = 2;
    for (i, part) in parts.iter().enumerate() {
        if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix("+}")) {
            if i >= segments.len() || segments[i..].iter().all(|s| s.is_empty()) {
                return None;
            }
            params.insert(name.to_owned(), segments[i..].join("/"));
            return Some((0, literal, params));
        }
        let seg = segments.get(i)?;
        if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if seg.is_empty() {
                return None;
            }
            params.insert(name.to_owned(), (*seg).to_owned());
            kind = 1;
        } else if part == seg {
            literal += 1;
        } else {
            return None;
        }
    }
    (parts.len() == segments.len()).then_some((kind, literal, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  KeycloakUrl: {Type: String, Default: "http://127.0.0.1:8080"}
  KeycloakRealm: {Type: String, Default: demo}
  ClientId: {Type: String, Default: user-sync}
Globals:
  Function: {Timeout: 10}
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: KeycloakJwt
        Authorizers:
          KeycloakJwt:
            IdentitySource: $request.header.Authorization
            JwtConfiguration:
              issuer: !Sub "${KeycloakUrl}/realms/${KeycloakRealm}"
              audience: [!Ref ClientId]
  LoginSyncFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildMethod: makefile}
    Properties:
      Events:
        Login: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /auth/login, Method: POST, Auth: {Authorizer: NONE}}}
  SessionFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildMethod: makefile}
    Properties:
      Timeout: 60
      Events:
        Me: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /auth/me, Method: GET}}
        Revoke: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: "/auth/sessions/{sid}", Method: DELETE}}
        Admin: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: "/admin/{proxy+}", Method: ANY}}
        AdminMe: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: "/admin/me", Method: GET}}
"#;

    #[test]
    fn cors_is_read_from_the_apis_configuration_with_its_origins_split() {
        let with_cors = TEMPLATE.replace(
            "      Auth:\n        DefaultAuthorizer",
            "      CorsConfiguration: !If\n        - HasCors\n        - AllowOrigins: !Split [\",\", !Ref Origins]\n          AllowMethods: [GET, POST]\n          AllowHeaders: [authorization]\n          MaxAge: 600\n        - !Ref AWS::NoValue\n      Auth:\n        DefaultAuthorizer",
        );
        let origins = HashMap::from([(
            "Origins".to_owned(),
            "http://a.test,http://b.test".to_owned(),
        )]);
        let cors = load(&with_cors, &origins).unwrap().cors.unwrap();
        assert_eq!(cors.allow_origins, ["http://a.test", "http://b.test"]);
        assert_eq!(cors.allow_methods, ["GET", "POST"]);
        assert_eq!(cors.max_age, Some(600));
        let none = HashMap::from([("Origins".to_owned(), String::new())]);
        assert!(
            load(&with_cors, &none).unwrap().cors.is_none(),
            "no origin, no CORS"
        );
        assert!(load(TEMPLATE, &HashMap::new()).unwrap().cors.is_none());
    }

    #[test]
    fn a_functions_binary_is_its_logical_id_in_kebab_case() {
        assert_eq!(binary_of("LoginSyncFunction"), "login-sync");
        assert_eq!(binary_of("AdminUsersFunction"), "admin-users");
        assert_eq!(binary_of("SessionFunction"), "session");
    }

    #[test]
    fn routes_authorizers_and_short_tags_are_read() {
        let api = load(
            TEMPLATE,
            &HashMap::from([("KeycloakRealm".to_owned(), "other".to_owned())]),
        )
        .unwrap();
        assert_eq!(
            api.authorizers["KeycloakJwt"],
            JwtAuthorizer {
                issuer: "http://127.0.0.1:8080/realms/other".into(),
                audience: vec!["user-sync".into()]
            }
        );
        let login = api.routes.iter().find(|r| r.path == "/auth/login").unwrap();
        assert_eq!(
            (
                login.function.as_str(),
                login.authorizer.as_ref(),
                login.timeout_secs
            ),
            ("login-sync", None, 10)
        );
        let me = api.routes.iter().find(|r| r.path == "/auth/me").unwrap();
        assert_eq!(
            (me.authorizer.as_deref(), me.timeout_secs),
            (Some("KeycloakJwt"), 30)
        );
    }

    #[test]
    fn route_precedence_follows_api_gateway() {
        let api = load(TEMPLATE, &HashMap::new()).unwrap();
        let (r, p) = match_route(&api, "DELETE", "/auth/sessions/abc").unwrap();
        assert_eq!(
            (r.path.as_str(), p["sid"].as_str()),
            ("/auth/sessions/{sid}", "abc")
        );
        let (r, _) = match_route(&api, "GET", "/admin/me").unwrap();
        assert_eq!(r.path, "/admin/me", "exact beats greedy");
        let (r, p) = match_route(&api, "PATCH", "/admin/users/1/sync").unwrap();
        assert_eq!(
            (r.path.as_str(), p["proxy"].as_str()),
            ("/admin/{proxy+}", "users/1/sync")
        );
        assert!(match_route(&api, "GET", "/auth/login").is_none());
        assert!(match_route(&api, "GET", "/nothing").is_none());
        assert!(match_route(&api, "DELETE", "/auth/sessions/").is_none());
    }
}
