//! How one variable is read: trimmed, and an empty one counts as unset.

/// The variable `name` of the environment `get` looks into.
pub(super) fn value(get: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// An environment of fixed pairs, for the configuration's tests.
#[cfg(test)]
pub(super) fn fixed(
    pairs: &'static [(&'static str, &'static str)],
) -> impl Fn(&str) -> Option<String> {
    move |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    }
}
