//! A request's headers as read in one host call. Reading them one by one costs a host call
//! each (and a VM re-entry to allocate each value), which for a filter that needs several of
//! them, or needs to know whether a header is there before removing it, costs more than
//! reading them all once.

/// The request headers at one moment, in Envoy's order (names lower-case, as Envoy keeps them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// `get`, owned.
    pub fn value(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    /// Every value of `name`, for checks that must see duplicates (e.g. two `Authorization`
    /// headers).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_by_name_any_case_with_duplicates() {
        let headers = Headers::new(vec![
            (":method".into(), "GET".into()),
            ("authorization".into(), "Bearer a".into()),
            ("Authorization".into(), "Bearer b".into()),
        ]);
        assert_eq!(headers.get(":method"), Some("GET"));
        assert_eq!(headers.get("AUTHORIZATION"), Some("Bearer a"));
        assert_eq!(headers.all("authorization"), ["Bearer a", "Bearer b"]);
        assert!(headers.all("cookie").is_empty());
        assert!(!headers.contains("x-user-id"));
        assert_eq!(headers.value(":method").as_deref(), Some("GET"));
        assert_eq!(Headers::default().get(":path"), None);
    }
}
