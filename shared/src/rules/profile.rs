//! What a user's profile may contain, checked before Keycloak is called: usernames and emails as
//! Keycloak stores them (NFKC, lowercase), refused when they carry invisible characters or could
//! pass for someone else's (UTS #39 mixed-script and whole-script confusables), person names, and
//! the business attributes — which ones exist (`USER_ATTRIBUTES`) and who may write each one (the
//! realm's user profile, `permissions.edit`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::{skeleton, RestrictionLevel, RestrictionLevelDetection};

pub use crate::error::FieldError;

/// Characters Keycloak's default user profile refuses in usernames and person names.
const PROHIBITED: &[char] = &[
    '<', '>', '&', '"', '\'', '$', '%', '!', '#', '?', '§', ';', '*', '~', '/', '\\', '|', '^',
    '=', '[', ']', '{', '}', '(', ')',
];

/// Control, format (zero-width, bidi overrides), private-use, unassigned, surrogate and separator
/// characters: nothing a person types into an identifier on purpose.
fn is_invisible(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::Surrogate
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::SpaceSeparator
    )
}

/// Bidirectional controls and the other characters that change how a name is displayed.
fn is_display_control(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control | GeneralCategory::PrivateUse | GeneralCategory::Unassigned
    ) || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// As Keycloak stores an identifier: compatibility-normalised, trimmed, lowercase.
fn canonical(raw: &str) -> String {
    raw.nfkc().collect::<String>().trim().to_lowercase()
}

/// Whether `s` could be mistaken for another identifier (UTS #39): letters from scripts that do
/// not go together (Cyrillic `а` among Latin letters), or a whole word in another script that
/// reads as plain ASCII (all-Cyrillic `аррӏе` for `apple`). Punctuation and digits are left out of
/// the script check; they are common to every script.
fn confusable(s: &str) -> bool {
    if s.is_ascii() {
        return false;
    }
    let letters: String = s.chars().filter(|c| c.is_alphabetic()).collect();
    if !letters
        .as_str()
        .check_restriction_level(RestrictionLevel::HighlyRestrictive)
    {
        return true;
    }
    let skeleton: String = skeleton(&letters).collect();
    skeleton.is_ascii()
}

/// A username as Keycloak stores it, or why it is refused: 3 to 255 characters, no white space,
/// invisible character or Keycloak-prohibited character, and nothing confusable.
pub fn username(raw: &str) -> Result<String, FieldError> {
    let v = canonical(raw);
    let len = v.chars().count();
    if !(3..=255).contains(&len) {
        return Err(FieldError::new("username", "must be 3 to 255 characters"));
    }
    if v.chars().any(is_invisible) {
        return Err(FieldError::new(
            "username",
            "must not contain white space, control or invisible characters",
        ));
    }
    if v.chars().any(|c| PROHIBITED.contains(&c)) {
        return Err(FieldError::new(
            "username",
            "may contain letters, digits and . _ - @ + only",
        ));
    }
    if confusable(&v) {
        return Err(FieldError::new(
            "username",
            "mixes scripts or imitates another name; use letters of one script",
        ));
    }
    if v.starts_with(SERVICE_ACCOUNT_PREFIX) {
        return Err(FieldError::new(
            "username",
            "must not begin with service-account-, the names of Keycloak's service accounts",
        ));
    }
    Ok(v)
}

/// Keycloak names service-account users `service-account-<client id>` but does not reserve the
/// prefix (contract §14); this project does, so no account passes for one by its name.
pub const SERVICE_ACCOUNT_PREFIX: &str = "service-account-";

/// A username with `@` is an email address, and Keycloak (email login on) looks it up by email
/// first (contract §13): it is only accepted as the account's own email, so it can never name
/// another account's address.
pub fn username_matches_email(username: &str, email: &str) -> Result<(), FieldError> {
    if username.contains('@') && username != email {
        return Err(FieldError::new(
            "username",
            "may contain @ only when it is the account's own email",
        ));
    }
    Ok(())
}

/// An email as Keycloak stores it (normalised, lowercase), or why it is refused.
pub fn email(raw: &str) -> Result<String, FieldError> {
    let v = canonical(raw);
    let invalid = || FieldError::new("email", "must be a valid email address");
    if v.len() > 255
        || v.chars()
            .any(|c| is_invisible(c) || matches!(c, ',' | '<' | '>' | '"'))
    {
        return Err(invalid());
    }
    let (local, domain) = v.split_once('@').ok_or_else(invalid)?;
    let well_formed = !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..");
    if !well_formed {
        return Err(invalid());
    }
    if confusable(local) || domain.split('.').any(confusable) {
        return Err(FieldError::new(
            "email",
            "mixes scripts or imitates another address",
        ));
    }
    Ok(v)
}

/// A first or last name: at most 255 characters, none of Keycloak's prohibited characters, no
/// control or display-direction characters.
pub fn person_name(field: &str, raw: &str) -> Result<String, FieldError> {
    let v = raw.nfkc().collect::<String>().trim().to_owned();
    if v.chars().count() > 255 {
        return Err(FieldError::new(field, "must be at most 255 characters"));
    }
    if v.chars()
        .any(|c| is_display_control(c) || (PROHIBITED.contains(&c) && c != '\''))
    {
        return Err(FieldError::new(
            field,
            "contains characters that are not allowed",
        ));
    }
    Ok(v)
}

/// A password we are willing to send on: present and not absurd. Keycloak's policy decides the rest.
pub fn password(raw: &str) -> Result<(), FieldError> {
    if raw.trim().is_empty() {
        return Err(FieldError::new("password", "required"));
    }
    if raw.len() > 1024 {
        return Err(FieldError::new("password", "must be at most 1024 bytes"));
    }
    Ok(())
}

pub use crate::outside::store::Attributes;

/// Who is writing attributes: the user about themself (registration) or an administrator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Editor {
    User,
    Admin,
}

/// The business attributes this deployment keeps (`USER_ATTRIBUTES`), and who may edit each one
/// according to the realm's user profile.
#[derive(Clone, Debug, PartialEq)]
pub struct AttributeRules {
    pub names: Vec<String>,
    user_editable: BTreeSet<String>,
    admin_editable: BTreeSet<String>,
}

const MAX_ATTRIBUTE_CHARS: usize = 255;

impl AttributeRules {
    /// The rules from the realm's user-profile document (`GET /users/profile`): an attribute is
    /// editable by whoever its `permissions.edit` names. An attribute the profile does not
    /// declare is editable by nobody (Keycloak would silently drop it).
    pub fn from_user_profile(names: &[String], profile: &Value) -> Self {
        let mut user_editable = BTreeSet::new();
        let mut admin_editable = BTreeSet::new();
        for attr in profile
            .get("attributes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = attr.get("name").and_then(Value::as_str) else {
                continue;
            };
            let edit = attr.pointer("/permissions/edit").and_then(Value::as_array);
            for who in edit.into_iter().flatten().filter_map(Value::as_str) {
                match who {
                    "user" => user_editable.insert(name.to_owned()),
                    "admin" => admin_editable.insert(name.to_owned()),
                    _ => false,
                };
            }
        }
        AttributeRules {
            names: names.to_vec(),
            user_editable,
            admin_editable,
        }
    }

    pub fn is_kept(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    fn may_edit(&self, editor: Editor, name: &str) -> bool {
        match editor {
            Editor::User => self.user_editable.contains(name),
            Editor::Admin => self.admin_editable.contains(name),
        }
    }

    /// Check a request's attributes (`None` removes one): each must be kept here, editable by
    /// `editor`, and of a sane size. Values are trimmed; an empty value removes the attribute.
    pub fn check(
        &self,
        editor: Editor,
        input: &BTreeMap<String, Option<String>>,
    ) -> Result<BTreeMap<String, Option<String>>, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut out = BTreeMap::new();
        for (name, value) in input {
            let field = format!("attributes.{name}");
            if !self.is_kept(name) {
                errors.push(FieldError::new(field, "unknown attribute"));
                continue;
            }
            if !self.may_edit(editor, name) {
                let who = match editor {
                    Editor::User => "users",
                    Editor::Admin => "administrators",
                };
                errors.push(FieldError::new(
                    field,
                    format!("may not be set by {who} (realm user profile)"),
                ));
                continue;
            }
            let value = value
                .as_deref()
                .map(|v| v.nfc().collect::<String>().trim().to_owned())
                .filter(|v| !v.is_empty());
            if let Some(v) = &value {
                if v.chars().count() > MAX_ATTRIBUTE_CHARS {
                    errors.push(FieldError::new(
                        field,
                        format!("must be at most {MAX_ATTRIBUTE_CHARS} characters"),
                    ));
                    continue;
                }
                if v.chars().any(is_display_control) {
                    errors.push(FieldError::new(
                        field,
                        "contains characters that are not allowed",
                    ));
                    continue;
                }
            }
            out.insert(name.clone(), value);
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

/// The kept attributes (`names`) of a Keycloak user, first value of each.
pub fn attributes_of_user(
    names: &[String],
    rep: &crate::outside::keycloak::UserRepresentation,
) -> Attributes {
    names
        .iter()
        .filter_map(|n| rep.attribute(n).map(|v| (n.clone(), v.to_owned())))
        .collect()
}

/// The kept attributes an access token states as claims (the realm maps each attribute to a
/// claim of the same name).
pub fn attributes_of_claims(names: &[String], claims: &Value) -> Attributes {
    names
        .iter()
        .filter_map(|n| {
            claims
                .get(n)
                .and_then(Value::as_str)
                .map(|v| (n.clone(), v.to_owned()))
        })
        .collect()
}

/// Only the values that are set, for a new record.
pub fn present(values: &BTreeMap<String, Option<String>>) -> Attributes {
    values
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usernames_are_stored_as_keycloak_stores_them() {
        assert_eq!(username("  Alice.Smith ").unwrap(), "alice.smith");
        assert_eq!(username("x@example.com").unwrap(), "x@example.com");
        // Fullwidth letters are the same name once NFKC-normalised.
        assert_eq!(username("ＡＬＩＣＥ").unwrap(), "alice");
        assert!(username("al").is_err());
        assert!(username("a b c").is_err());
        assert!(username("bad<name>").is_err());
    }

    #[test]
    fn invisible_and_direction_characters_are_refused_in_usernames() {
        for bad in [
            "alice\u{200b}",
            "al\u{202e}ice",
            "ali\u{2066}ce",
            "alice\u{e000}",
            "al\u{7}ice",
        ] {
            assert!(username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn usernames_mixing_scripts_or_imitating_latin_are_refused() {
        assert!(
            username("\u{430}lice").is_err(),
            "Cyrillic a among Latin letters"
        );
        assert!(
            username("\u{430}\u{440}\u{440}\u{4cf}\u{435}").is_err(),
            "all-Cyrillic 'apple'"
        );
        // Names in one script that do not read as Latin are fine.
        assert_eq!(username("иван").unwrap(), "иван");
        assert_eq!(username("josé.garcía").unwrap(), "josé.garcía");
        assert_eq!(username("山田太郎").unwrap(), "山田太郎");
    }

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(email("A@Example.COM").unwrap(), "a@example.com");
        for bad in [
            "a@",
            "@b.c",
            "a@b",
            "a b@c.d",
            "a@@b.c",
            "a\u{200b}@b.co",
            "\u{430}dmin@example.com",
        ] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_refuse_direction_overrides_but_keep_apostrophes() {
        assert_eq!(person_name("lastName", "O'Neil").unwrap(), "O'Neil");
        assert!(person_name("firstName", "Ann\u{202e}").is_err());
        assert!(person_name("firstName", "<b>").is_err());
    }

    fn rules() -> AttributeRules {
        let names: Vec<String> = ["organization", "phone", "title"]
            .map(String::from)
            .to_vec();
        let profile = json!({"attributes": [
            {"name": "organization", "permissions": {"edit": ["admin"]}},
            {"name": "phone", "permissions": {"edit": ["admin", "user"]}},
            {"name": "title", "permissions": {"edit": ["admin"]}},
            {"name": "shoeSize", "permissions": {"edit": ["admin", "user"]}}
        ]});
        AttributeRules::from_user_profile(&names, &profile)
    }

    #[test]
    fn users_may_write_only_what_the_user_profile_lets_them_edit() {
        let input = BTreeMap::from([
            ("organization".to_owned(), Some("Acme".to_owned())),
            ("phone".to_owned(), Some(" +1 555 ".to_owned())),
        ]);
        let errors = rules().check(Editor::User, &input).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "attributes.organization");
        let ok = rules().check(Editor::Admin, &input).unwrap();
        assert_eq!(ok["phone"].as_deref(), Some("+1 555"));
    }

    #[test]
    fn attributes_this_deployment_does_not_keep_are_unknown() {
        let input = BTreeMap::from([("shoeSize".to_owned(), Some("44".to_owned()))]);
        let errors = rules().check(Editor::Admin, &input).unwrap_err();
        assert_eq!(errors[0].message, "unknown attribute");
    }
}
