//! What a request states, as plain values the features take: where it came from, a page size,
//! an id from the path. Reading them off an HTTP request is the edge's (`http`); judging them
//! needs nothing else.

use crate::error::Error;

/// Where a request came from, as API Gateway states it.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub request_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A page size from the query string: 1 to 200, 50 when absent.
pub fn limit(raw: Option<&str>) -> Result<usize, Error> {
    match raw {
        None | Some("") => Ok(50),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=200).contains(l))
            .ok_or_else(|| Error::field("limit", "must be a whole number from 1 to 200")),
    }
}

/// A Keycloak id from a path (users and sessions are UUIDs): anything else names nothing, so it
/// is a 404 before any Keycloak or DynamoDB call.
pub fn keycloak_id(raw: &str) -> Result<&str, Error> {
    // 36 characters: the hyphenated form only (`uuid` also reads simple, braced and URN ones).
    if raw.len() == 36 && uuid::Uuid::try_parse(raw).is_ok() {
        Ok(raw)
    } else {
        Err(Error::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uuid_shaped_ids_name_a_user() {
        assert!(keycloak_id("2c4e8a1b-0f3d-4c5e-9a7b-1d2e3f4a5b6c").is_ok());
        for bad in [
            "",
            "..",
            "abc",
            "2c4e8a1b-0f3d-4c5e-9a7b-1d2e3f4a5b6",
            "../users/x/reset-password",
            "2c4e8a1b_0f3d_4c5e_9a7b_1d2e3f4a5b6c",
            "2c4e8a1b-0f3d-4c5e-9a7b-1d2e3f4a5b6g",
        ] {
            assert!(matches!(keycloak_id(bad), Err(Error::NotFound)), "{bad}");
        }
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(limit(None).unwrap(), 50);
        assert_eq!(limit(Some("200")).unwrap(), 200);
        assert!(limit(Some("0")).is_err());
        assert!(limit(Some("201")).is_err());
    }
}
