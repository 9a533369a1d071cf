//! The audit trail of admin actions. Keycloak's admin events only ever name the service account,
//! so this is the one place that knows which person did what: every admin mutation, allowed or
//! refused, leaves one record (actor, action, target, the names of the fields it changed — never
//! their values —, outcome, request id, time) in DynamoDB and in one structured log line. The
//! stored record names people by id only; the trail shows the actor's current username.

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::base::clock::iso8601;
use crate::base::clock::{now_ms, EpochSecs};
use crate::error::{Error, ProblemCode};
use crate::outside::auth::Principal;
use crate::outside::store::{AuditQuery, AuditRecord};
use crate::services::Services;

/// The target of a creation that did not happen.
pub const NEW_USER: &str = "new-user";
/// The target of bulk-sync control.
pub const SYNC: &str = "sync";

/// Who acts, in which request.
#[derive(Clone, Copy)]
pub struct Actor<'a> {
    pub principal: &'a Principal,
    pub request_id: &'a str,
}

/// An admin action, as the trail names it (`user.update`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AuditAction {
    #[serde(rename = "user.create")]
    UserCreate,
    #[serde(rename = "user.update")]
    UserUpdate,
    #[serde(rename = "user.delete")]
    UserDelete,
    #[serde(rename = "user.reset_password")]
    UserResetPassword,
    #[serde(rename = "user.logout")]
    UserLogout,
    #[serde(rename = "user.sync")]
    UserSync,
    #[serde(rename = "sync.start")]
    SyncStart,
    #[serde(rename = "sync.approve")]
    SyncApprove,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::UserCreate => "user.create",
            AuditAction::UserUpdate => "user.update",
            AuditAction::UserDelete => "user.delete",
            AuditAction::UserResetPassword => "user.reset_password",
            AuditAction::UserLogout => "user.logout",
            AuditAction::UserSync => "user.sync",
            AuditAction::SyncStart => "sync.start",
            AuditAction::SyncApprove => "sync.approve",
        }
    }
}

/// Record an admin action and how it ended. A failure to write the record is logged (the log
/// line carries the same content) and never undoes or fails the action itself.
pub async fn record<T>(
    services: &Services,
    actor: Actor<'_>,
    action: AuditAction,
    target_id: &str,
    fields: &[String],
    result: &Result<T, Error>,
) {
    let outcome = AuditOutcome::of(result);
    write(services, actor, action, target_id, fields, outcome).await;
}

/// How an audited action ended; the record keeps it as `succeeded`, `forbidden`,
/// `refused:<problem code>` or `failed:<problem code>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditOutcome {
    Succeeded,
    /// The policy refused the caller, on the route or on its target.
    Forbidden,
    /// Input the route refused before acting (the body's or the query's rules).
    Refused(ProblemCode),
    /// The action was tried and did not (or not wholly) happen.
    Failed(ProblemCode),
}

impl AuditOutcome {
    pub fn of<T>(result: &Result<T, Error>) -> Self {
        let Err(e) = result else {
            return AuditOutcome::Succeeded;
        };
        let code = e.to_problem().code;
        if matches!(code, ProblemCode::Forbidden | ProblemCode::ForbiddenTarget) {
            AuditOutcome::Forbidden
        } else if is_refused_input(e) {
            AuditOutcome::Refused(code)
        } else {
            AuditOutcome::Failed(code)
        }
    }
}

impl std::fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditOutcome::Succeeded => f.write_str("succeeded"),
            AuditOutcome::Forbidden => f.write_str("forbidden"),
            AuditOutcome::Refused(code) => write!(f, "refused:{code}"),
            AuditOutcome::Failed(code) => write!(f, "failed:{code}"),
        }
    }
}

/// Input the route refused before acting (the body's or the query's rules).
fn is_refused_input(e: &Error) -> bool {
    matches!(
        e,
        Error::Validation(_)
            | Error::BadRequest { .. }
            | Error::UnsupportedMediaType
            | Error::PayloadTooLarge { .. }
            | Error::PreconditionRequired
    )
}

async fn write(
    services: &Services,
    actor: Actor<'_>,
    action: AuditAction,
    target_id: &str,
    fields: &[String],
    outcome: AuditOutcome,
) {
    // A path id that names no user was refused before anything happened, and cannot key a record.
    if !matches!(target_id, NEW_USER | SYNC)
        && crate::rules::request::keycloak_id(target_id).is_err()
    {
        return;
    }
    let at = now_ms();
    let record = AuditRecord {
        at,
        request_id: actor.request_id.to_owned(),
        actor_id: actor.principal.user_id.clone(),
        action: action.as_str().to_owned(),
        target_id: target_id.to_owned(),
        fields: fields.to_vec(),
        outcome: outcome.to_string(),
        expires_at: EpochSecs::of_ms(at)
            .after(i64::from(services.config.audit_retention_days) * 86_400),
    };
    tracing::info!(
        audit = true,
        actor_id = %record.actor_id,
        actor = %actor.principal.username,
        action = %record.action,
        target_id = %record.target_id,
        fields = ?record.fields,
        outcome = %record.outcome,
        request_id = %record.request_id,
        "admin action"
    );
    if let Err(e) = services.store.put_audit(&record).await {
        tracing::error!(error = %e, request_id = %record.request_id, "could not store the audit record");
    }
}

/// The names of the fields a request sets, spelled as its JSON spells them (serde's own
/// renaming) and in its order, for the audit record: a member serde leaves out or writes as
/// `null` is not named, and a map's entries are named `map.key`. Only names leave here.
pub fn field_names<T: Serialize>(request: &T) -> Vec<String> {
    serde_json::to_string(request)
        .ok()
        .and_then(|json| serde_json::from_str::<FieldNames>(&json).ok())
        .map(|names| names.0)
        .unwrap_or_default()
}

/// The member names of a JSON object, in order (a `serde_json::Map` would sort them).
struct FieldNames(Vec<String>);

impl<'de> Deserialize<'de> for FieldNames {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> Visitor<'de> for Names {
            type Value = FieldNames;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldNames, A::Error> {
                let mut names = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, Value>()? {
                    match value {
                        Value::Null => {}
                        Value::Object(entries) => {
                            names.extend(entries.keys().map(|key| format!("{name}.{key}")))
                        }
                        _ => names.push(name),
                    }
                }
                Ok(FieldNames(names))
            }
        }
        d.deserialize_map(Names)
    }
}

/// `input` (a parsed body or query) as the route goes on with it; a refused one is recorded
/// (`refused:<code>`, with the field names the request carried) before it is answered.
pub async fn admit<T>(
    services: &Services,
    actor: Actor<'_>,
    action: AuditAction,
    target_id: &str,
    fields: &[String],
    input: Result<T, Error>,
) -> Result<T, Error> {
    if let Err(e) = &input {
        let outcome = AuditOutcome::Refused(e.to_problem().code);
        write(services, actor, action, target_id, fields, outcome).await;
    }
    input
}

/// An audit record as `GET /admin/audit` shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    pub at: String,
    pub request_id: String,
    pub actor_id: String,
    pub actor_username: String,
    pub action: String,
    pub target_id: String,
    pub fields: Vec<String>,
    pub outcome: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub items: Vec<AuditView>,
    pub next_cursor: Option<String>,
}

/// The query of `GET /admin/audit` (unknown keys are ignored; a key given twice is refused).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuditParams {
    pub target: Option<String>,
    pub actor: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// `GET /admin/audit`: newest first, by target, by actor, or both.
pub async fn list(
    services: &Services,
    actor: Actor<'_>,
    q: AuditParams,
) -> Result<AuditPage, Error> {
    services
        .policy
        .allow_route(actor.principal, crate::rules::policy::Action::ReadAudit)?;
    let target = q.target.filter(|t| !t.is_empty());
    let by_actor = q.actor.filter(|a| !a.is_empty());
    let (limit, cursor) = (q.limit.as_deref(), q.cursor);
    if target.is_none() && by_actor.is_none() {
        return Err(Error::field(
            "target",
            "give a target or an actor (user id)",
        ));
    }
    let page = services
        .store
        .list_audit(&AuditQuery {
            target,
            actor: by_actor,
            limit: crate::rules::request::limit(limit)?,
            cursor: cursor.filter(|c| !c.is_empty()),
        })
        .await?;
    // The actors' usernames as their records have them now (empty for an erased one).
    let mut usernames = std::collections::HashMap::new();
    for r in &page.items {
        if !usernames.contains_key(&r.actor_id) {
            let user = services.store.get_user(&r.actor_id).await?;
            usernames.insert(
                r.actor_id.clone(),
                user.map(|u| u.keycloak.username).unwrap_or_default(),
            );
        }
    }
    Ok(AuditPage {
        items: page
            .items
            .into_iter()
            .map(|r| AuditView {
                at: iso8601(r.at),
                request_id: r.request_id,
                actor_username: usernames.get(&r.actor_id).cloned().unwrap_or_default(),
                actor_id: r.actor_id,
                action: r.action,
                target_id: r.target_id,
                fields: r.fields,
                outcome: r.outcome,
            })
            .collect(),
        next_cursor: page.next_cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Request {
        new_password: String,
        first_name: Option<String>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        keep_sessions: bool,
        extra_values: std::collections::BTreeMap<String, Option<String>>,
        dry_run: bool,
    }

    #[test]
    fn the_fields_a_request_sets_are_named_in_its_json_spelling_and_order_without_values() {
        let request = Request {
            new_password: "s3cret-value".into(),
            first_name: None,
            keep_sessions: false,
            extra_values: [("b".into(), None), ("a".into(), Some("1".into()))].into(),
            dry_run: false,
        };
        let names = field_names(&request);
        assert_eq!(
            names,
            ["newPassword", "extraValues.a", "extraValues.b", "dryRun"]
        );
        assert!(!names.concat().contains("s3cret"));
    }

    #[test]
    fn an_action_is_named_the_same_in_the_record_and_in_json() {
        for action in [
            AuditAction::UserCreate,
            AuditAction::UserUpdate,
            AuditAction::UserDelete,
            AuditAction::UserResetPassword,
            AuditAction::UserLogout,
            AuditAction::UserSync,
            AuditAction::SyncStart,
            AuditAction::SyncApprove,
        ] {
            assert_eq!(serde_json::json!(action), action.as_str());
        }
    }

    #[test]
    fn an_outcome_says_how_the_action_ended_in_the_words_the_trail_keeps() {
        let cases: [(Result<(), Error>, &str); 4] = [
            (Ok(()), "succeeded"),
            (Err(Error::Forbidden), "forbidden"),
            (
                Err(Error::field("email", "invalid")),
                "refused:validation_failed",
            ),
            (Err(Error::WriteInProgress), "failed:write_in_progress"),
        ];
        for (result, kept) in cases {
            assert_eq!(AuditOutcome::of(&result).to_string(), kept);
        }
    }
}
