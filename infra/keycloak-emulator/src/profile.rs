//! The declarative user profile (Keycloak 24+) and the realm password policy: which attributes are
//! kept, how values are validated, and the exact error keys Keycloak answers with (contract §4.2, §7.2).

use std::collections::BTreeMap;

use serde_json::{json, Value};

const PROFILE_COMPONENT: &str = "org.keycloak.userprofile.UserProfileProvider";
const BUILTIN: &[&str] = &["username", "email", "firstName", "lastName"];
/// Characters Keycloak's person-name and username validators refuse.
const PROHIBITED: &[char] = &[
    '<', '>', '&', '"', '$', '%', '!', '#', '?', '§', ';', '*', '~', '/', '\\', '|', '^', '=', '[',
    ']', '{', '}', '(', ')',
];

#[derive(Clone, Debug)]
pub struct UserProfile {
    /// The UPConfig document exactly as `GET /users/profile` returns it.
    pub config: Value,
}

fn default_config() -> Value {
    let perms = json!({"view": ["admin", "user"], "edit": ["admin", "user"]});
    json!({
        "attributes": [
            {"name": "username", "displayName": "${username}", "permissions": perms, "multivalued": false,
             "validations": {"length": {"min": 3, "max": 255}, "username-prohibited-characters": {}, "up-username-not-idn-homograph": {}}},
            {"name": "email", "displayName": "${email}", "permissions": perms, "multivalued": false,
             "required": {"roles": ["user"]}, "validations": {"email": {}, "length": {"max": 255}}},
            {"name": "firstName", "displayName": "${firstName}", "permissions": perms, "multivalued": false,
             "required": {"roles": ["user"]}, "validations": {"length": {"max": 255}, "person-name-prohibited-characters": {}}},
            {"name": "lastName", "displayName": "${lastName}", "permissions": perms, "multivalued": false,
             "required": {"roles": ["user"]}, "validations": {"length": {"max": 255}, "person-name-prohibited-characters": {}}}
        ],
        "groups": [{"name": "user-metadata", "displayHeader": "User metadata", "displayDescription": "Attributes, which refer to user metadata"}]
    })
}

impl UserProfile {
    pub fn from_realm_export(source: &Value) -> Result<Self, String> {
        let raw = source
            .pointer(&format!("/components/{PROFILE_COMPONENT}"))
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|c| c.pointer("/config/kc.user.profile.config/0"))
            .and_then(Value::as_str);
        let config = match raw {
            Some(text) => serde_json::from_str(text).map_err(|e| {
                format!("the user profile config in the realm export is not JSON: {e}")
            })?,
            None => default_config(),
        };
        Ok(UserProfile { config })
    }

    /// Replace the config, as `PUT /users/profile` does; the whole document is required.
    pub fn replace(&mut self, config: Value) -> Result<(), &'static str> {
        if !config.get("attributes").is_some_and(Value::is_array) {
            return Err("[UserProfile configuration without 'attributes' section is not allowed]");
        }
        if let Some(p) = config.get("unmanagedAttributePolicy") {
            if !p.is_null() && !matches!(p.as_str(), Some("ENABLED" | "ADMIN_VIEW" | "ADMIN_EDIT"))
            {
                return Err("Invalid unmanagedAttributePolicy");
            }
        }
        self.config = config;
        Ok(())
    }

    fn attribute(&self, name: &str) -> Option<&Value> {
        self.config
            .get("attributes")?
            .as_array()?
            .iter()
            .find(|a| a.get("name").and_then(Value::as_str) == Some(name))
    }

    fn policy(&self) -> Option<&str> {
        self.config
            .get("unmanagedAttributePolicy")
            .and_then(Value::as_str)
    }

    fn admin_may_write_unmanaged(&self) -> bool {
        matches!(self.policy(), Some("ENABLED" | "ADMIN_EDIT"))
    }

    fn admin_may_see_unmanaged(&self) -> bool {
        self.policy().is_some()
    }

    pub fn is_declared(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    /// The custom attributes an admin write keeps: declared ones, plus unmanaged ones when the
    /// policy lets admins write them; blank values are dropped. Anything else is silently lost,
    /// as in Keycloak.
    pub fn writable_attributes(
        &self,
        input: BTreeMap<String, Vec<String>>,
    ) -> BTreeMap<String, Vec<String>> {
        input
            .into_iter()
            .filter(|(k, _)| !BUILTIN.contains(&k.as_str()))
            .filter(|(k, _)| self.is_declared(k) || self.admin_may_write_unmanaged())
            .map(|(k, v)| {
                (
                    k,
                    v.into_iter()
                        .filter(|x| !x.trim().is_empty())
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }

    pub fn visible_attributes<'a>(
        &self,
        stored: &'a BTreeMap<String, Vec<String>>,
    ) -> BTreeMap<&'a str, &'a Vec<String>> {
        stored
            .iter()
            .filter(|(k, _)| self.is_declared(k) || self.admin_may_see_unmanaged())
            .map(|(k, v)| (k.as_str(), v))
            .collect()
    }

    /// Validate one value of a declared attribute; returns the field error, if any.
    pub fn validate(&self, name: &str, value: &str) -> Option<Value> {
        let validations = self.attribute(name)?.get("validations")?;
        let err = |key: &str, params: Vec<Value>| {
            let mut p = vec![json!(name)];
            p.extend(params);
            Some(json!({"field": name, "errorMessage": key, "params": p}))
        };
        let len = value.chars().count() as i64;
        if let Some(l) = validations.get("length") {
            let min = l.get("min").and_then(Value::as_i64);
            let max = l.get("max").and_then(Value::as_i64);
            if min.is_some_and(|m| len < m) || max.is_some_and(|m| len > m) {
                return err(
                    "error-invalid-length",
                    vec![json!(min.unwrap_or(0)), json!(max.unwrap_or(i64::MAX))],
                );
            }
        }
        if validations.get("up-username-not-idn-homograph").is_some() && homograph(value) {
            return err("invalidUsernameMessage", vec![json!(value)]);
        }
        if validations.get("email").is_some() && !is_email(value) {
            return err("error-invalid-email", vec![json!(value)]);
        }
        if validations.get("username-prohibited-characters").is_some()
            && value
                .chars()
                .any(|c| c.is_whitespace() || c == '\'' || PROHIBITED.contains(&c))
        {
            return err("error-username-invalid-character", vec![json!(value)]);
        }
        if validations
            .get("person-name-prohibited-characters")
            .is_some()
            && value.chars().any(|c| PROHIBITED.contains(&c))
        {
            return err("error-person-name-invalid-character", vec![json!(value)]);
        }
        if let Some(p) = validations.get("pattern") {
            let pattern = p.get("pattern").and_then(Value::as_str).unwrap_or("");
            if !simple_pattern_matches(pattern, value) {
                let msg = p
                    .get("error-message")
                    .and_then(Value::as_str)
                    .unwrap_or("error-pattern-no-match");
                return err(msg, vec![json!(pattern)]);
            }
        }
        None
    }

    /// Attributes required for the `user` role that the user lacks (VERIFY_PROFILE at login).
    pub fn missing_required_for_user(&self, present: impl Fn(&str) -> bool) -> bool {
        self.config
            .get("attributes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|a| {
                a.pointer("/required/roles")
                    .and_then(Value::as_array)
                    .is_some_and(|r| r.iter().any(|x| x == "user"))
            })
            .filter_map(|a| a.get("name").and_then(Value::as_str))
            .any(|name| !present(name))
    }
}

/// `up-username-not-idn-homograph`: Keycloak refuses a username that would not survive IDN
/// conversion unchanged — invisible and direction characters (mapped away or prohibited) and
/// letters that pass for others. Emulated with the Unicode data Keycloak's check rests on:
/// format, control, private-use and unassigned characters, mixed scripts (UTS #39 above "highly
/// restrictive"), and whole words in another script that read as ASCII.
fn homograph(v: &str) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    use unicode_security::{skeleton, RestrictionLevel, RestrictionLevelDetection};
    let hidden = |c: char| {
        matches!(
            c.general_category(),
            G::Format | G::Control | G::PrivateUse | G::Unassigned | G::Surrogate
        )
    };
    if v.chars().any(hidden) {
        return true;
    }
    let letters: String = v.chars().filter(|c| c.is_alphabetic()).collect();
    !letters.is_ascii()
        && (!letters
            .as_str()
            .check_restriction_level(RestrictionLevel::HighlyRestrictive)
            || skeleton(&letters).all(|c| c.is_ascii()))
}

fn is_email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !domain.is_empty()
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !v.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, ',' | '<' | '>' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
        })
}

/// The profile `pattern` validator, for the simple character-class patterns a demo realm uses
/// (`^[+0-9 ()-]*$` style). Anything the emulator cannot read is treated as matching.
fn simple_pattern_matches(pattern: &str, value: &str) -> bool {
    let Some(class) = pattern
        .strip_prefix("^[")
        .and_then(|p| p.strip_suffix("]*$").or_else(|| p.strip_suffix("]+$")))
    else {
        return true;
    };
    let chars: Vec<char> = class.chars().collect();
    let allowed = |c: char| {
        let mut i = 0;
        while i < chars.len() {
            if i + 2 < chars.len() && chars[i + 1] == '-' {
                if (chars[i]..=chars[i + 2]).contains(&c) {
                    return true;
                }
                i += 3;
            } else {
                if chars[i] == c {
                    return true;
                }
                i += 1;
            }
        }
        false
    };
    (pattern.ends_with("*$") || !value.is_empty()) && value.chars().all(allowed)
}

/// A Keycloak password policy string such as `length(8) and digits(1) and notUsername(undefined)`.
#[derive(Clone, Debug, Default)]
pub struct PasswordPolicy {
    rules: Vec<(String, i64)>,
}

impl PasswordPolicy {
    pub fn parse(text: &str) -> Self {
        let rules = text
            .split(" and ")
            .filter_map(|part| {
                let part = part.trim();
                if part.is_empty() {
                    return None;
                }
                let (name, arg) = match part.split_once('(') {
                    Some((n, rest)) => (n.trim(), rest.trim_end_matches(')').trim()),
                    None => (part, ""),
                };
                Some((name.to_owned(), arg.parse().unwrap_or(1)))
            })
            .collect();
        PasswordPolicy { rules }
    }

    /// `(message key, English message)` of the first rule the password breaks.
    pub fn check(
        &self,
        password: &str,
        username: &str,
        email: Option<&str>,
    ) -> Option<(&'static str, String)> {
        let count = |f: fn(&char) -> bool| password.chars().filter(f).count() as i64;
        for (rule, n) in &self.rules {
            let n = *n;
            let broken = match rule.as_str() {
                "length" if (password.chars().count() as i64) < n => Some((
                    "invalidPasswordMinLengthMessage",
                    format!("Invalid password: minimum length {n}."),
                )),
                "maxLength" if (password.chars().count() as i64) > n => Some((
                    "invalidPasswordMaxLengthMessage",
                    format!("Invalid password: maximum length {n}."),
                )),
                "digits" if count(char::is_ascii_digit) < n => Some((
                    "invalidPasswordMinDigitsMessage",
                    format!("Invalid password: must contain at least {n} numerical digits."),
                )),
                "upperCase" if count(|c| c.is_uppercase()) < n => Some((
                    "invalidPasswordMinUpperCaseCharsMessage",
                    format!("Invalid password: must contain at least {n} upper case characters."),
                )),
                "lowerCase" if count(|c| c.is_lowercase()) < n => Some((
                    "invalidPasswordMinLowerCaseCharsMessage",
                    format!("Invalid password: must contain at least {n} lower case characters."),
                )),
                "specialChars" if count(|c| !c.is_alphanumeric()) < n => Some((
                    "invalidPasswordMinSpecialCharsMessage",
                    format!("Invalid password: must contain at least {n} special characters."),
                )),
                "notUsername" if password.eq_ignore_ascii_case(username) => Some((
                    "invalidPasswordNotUsernameMessage",
                    "Invalid password: must not be equal to the username.".to_owned(),
                )),
                "notEmail" if email.is_some_and(|e| password.eq_ignore_ascii_case(e)) => Some((
                    "invalidPasswordNotEmailMessage",
                    "Invalid password: must not be equal to the email.".to_owned(),
                )),
                _ => None,
            };
            if broken.is_some() {
                return broken;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy_reports_the_first_broken_rule_with_keycloaks_text() {
        let p = PasswordPolicy::parse("length(8) and digits(1) and notUsername(undefined)");
        assert_eq!(
            p.check("short", "bob", None).unwrap().1,
            "Invalid password: minimum length 8."
        );
        assert_eq!(
            p.check("longenough", "bob", None).unwrap().0,
            "invalidPasswordMinDigitsMessage"
        );
        assert!(p.check("longenough1", "bob", None).is_none());
        assert_eq!(
            p.check("bobbobbob1", "bobbobbob1", None).unwrap().0,
            "invalidPasswordNotUsernameMessage"
        );
    }

    #[test]
    fn email_validation_accepts_plain_addresses_and_refuses_broken_ones() {
        assert!(is_email("a.b+c@example.com"));
        for bad in ["x@", "@x.io", "a b@x.io", "a@b@c", "a@.x"] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn the_idn_homograph_validator_refuses_look_alike_usernames() {
        let p = UserProfile {
            config: default_config(),
        };
        for bad in ["\u{430}lice", "alice\u{200b}", "al\u{202e}ice"] {
            let e = p.validate("username", bad).expect(bad);
            assert_eq!(e["errorMessage"], "invalidUsernameMessage");
        }
        for good in ["alice", "jos\u{e9}", "\u{438}\u{432}\u{430}\u{43d}"] {
            assert!(p.validate("username", good).is_none(), "{good}");
        }
    }

    #[test]
    fn character_class_patterns_are_applied() {
        assert!(simple_pattern_matches("^[+0-9 ()-]*$", "+1 (555) 010-2000"));
        assert!(!simple_pattern_matches("^[+0-9 ()-]*$", "call me"));
    }

    #[test]
    fn undeclared_attributes_are_dropped_unless_the_policy_allows_them() {
        let mut p = UserProfile {
            config: default_config(),
        };
        let input = BTreeMap::from([("dept".to_owned(), vec!["eng".to_owned()])]);
        assert!(p.writable_attributes(input.clone()).is_empty());
        let mut cfg = default_config();
        cfg["unmanagedAttributePolicy"] = json!("ADMIN_EDIT");
        p.replace(cfg).unwrap();
        assert_eq!(p.writable_attributes(input).len(), 1);
        assert!(p
            .replace(json!({"unmanagedAttributePolicy": "ENABLED"}))
            .is_err());
    }
}
