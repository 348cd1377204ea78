//! The one path grammar of the edge: `google.api.http` path templates (see
//! `google/api/http.proto`). The transcoder binds variables with it; auth policy rules and the
//! table of routes the edge serves are templates too (auth's without variables).
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! Verb     = ":" LITERAL ;
//! ```

use crate::percent_decode;

/// One segment of a template, with variables already expanded into their segments.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    One,
    /// `**`: any number of segments; only last.
    Rest,
}

impl Segment {
    fn as_pattern(&self) -> &str {
        match self {
            Segment::Literal(literal) => literal,
            Segment::One => "*",
            Segment::Rest => "**",
        }
    }
}

/// A variable and the segments it captures (`end` is `None` when it runs to a trailing `**`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Variable {
    field_path: String,
    start: usize,
    end: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    verb: Option<String>,
    source: String,
}

impl PathTemplate {
    pub fn parse(source: &str) -> Result<Self, String> {
        let fail = |why: &str| format!("path template {source:?}: {why}");
        let body = source
            .strip_prefix('/')
            .ok_or_else(|| fail("must start with '/'"))?;
        // The verb is the text after the last ':' that is outside any variable.
        let (body, verb) = match body.rfind(':') {
            Some(at) if !body[at..].contains('}') => {
                (&body[..at], Some(body[at + 1..].to_string()))
            }
            _ => (body, None),
        };
        if verb.as_deref() == Some("") {
            return Err(fail("empty verb"));
        }
        let mut template = PathTemplate {
            segments: Vec::new(),
            variables: Vec::new(),
            verb,
            source: source.to_string(),
        };
        let mut rest = body;
        loop {
            if let Some(inner) = rest.strip_prefix('{') {
                let close = inner.find('}').ok_or_else(|| fail("unclosed '{'"))?;
                let (field_path, pattern) = match inner[..close].split_once('=') {
                    Some((field, pattern)) => (field, pattern),
                    None => (&inner[..close], "*"),
                };
                if field_path.is_empty()
                    || !field_path.split('.').all(|part| {
                        !part.is_empty()
                            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
                {
                    return Err(fail("variable needs a field path like {name} or {a.b}"));
                }
                if template
                    .variables
                    .iter()
                    .any(|v| v.field_path == field_path)
                {
                    return Err(fail("a field is bound twice"));
                }
                let start = template.segments.len();
                for part in pattern.split('/') {
                    if part.contains(['{', '}']) {
                        return Err(fail("nested variables are not allowed"));
                    }
                    template.push(part).map_err(|why| fail(&why))?;
                }
                let end = match template.segments.last() {
                    Some(Segment::Rest) => None,
                    _ => Some(template.segments.len()),
                };
                template.variables.push(Variable {
                    field_path: field_path.to_string(),
                    start,
                    end,
                });
                rest = &inner[close + 1..];
            } else {
                let end = rest.find('/').unwrap_or(rest.len());
                let part = &rest[..end];
                if part.contains(['{', '}']) {
                    return Err(fail("a variable must be a whole segment"));
                }
                template.push(part).map_err(|why| fail(&why))?;
                rest = &rest[end..];
            }
            match rest.strip_prefix('/') {
                Some(next) => rest = next,
                None if rest.is_empty() => break,
                None => return Err(fail("a variable must be a whole segment")),
            }
        }
        Ok(template)
    }

    fn push(&mut self, part: &str) -> Result<(), String> {
        if matches!(self.segments.last(), Some(Segment::Rest)) {
            return Err("'**' must be the last segment".into());
        }
        self.segments.push(match part {
            "" => return Err("empty segment".into()),
            "*" => Segment::One,
            "**" => Segment::Rest,
            literal if literal.contains('*') => return Err("'*' must be a whole segment".into()),
            literal => Segment::Literal(literal.to_string()),
        });
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The custom verb (`purchase` of `/items/{id}:purchase`), if any.
    pub fn verb(&self) -> Option<&str> {
        self.verb.as_deref()
    }

    /// The field path of every variable, e.g. `id` or `book.shelf`.
    pub fn field_paths(&self) -> impl Iterator<Item = &str> {
        self.variables.iter().map(|v| v.field_path.as_str())
    }

    /// The template with variable names erased (`/v1/{id}` and `/v1/{name}` are both
    /// `/v1/*`): two routes of one HTTP method with the same shape match the same requests.
    pub fn shape(&self) -> String {
        let mut shape = String::new();
        for segment in &self.segments {
            shape.push('/');
            shape.push_str(segment.as_pattern());
        }
        if let Some(verb) = &self.verb {
            shape.push(':');
            shape.push_str(verb);
        }
        shape
    }

    /// The template as OpenAPI writes paths: each variable as `{field_path}`, with what it
    /// captures when that is not exactly one segment (`shelves/*/books/*`, `**`), which
    /// OpenAPI's path parameters cannot say.
    pub fn named_variables(&self) -> (String, Vec<(String, Option<String>)>) {
        let mut path = String::new();
        let mut variables = Vec::new();
        let mut index = 0;
        while index < self.segments.len() {
            path.push('/');
            match self.variables.iter().find(|v| v.start == index) {
                Some(variable) => {
                    let end = variable.end.unwrap_or(self.segments.len());
                    path.push('{');
                    path.push_str(&variable.field_path);
                    path.push('}');
                    let captures = &self.segments[index..end];
                    let pattern = (captures != [Segment::One]).then(|| {
                        captures
                            .iter()
                            .map(Segment::as_pattern)
                            .collect::<Vec<_>>()
                            .join("/")
                    });
                    variables.push((variable.field_path.clone(), pattern));
                    index = end;
                }
                None => {
                    path.push_str(self.segments[index].as_pattern());
                    index += 1;
                }
            }
        }
        if let Some(verb) = &self.verb {
            path.push(':');
            path.push_str(verb);
        }
        (path, variables)
    }

    /// A path this template matches, `value` standing for each `*` and `**`.
    pub fn sample(&self, value: &str) -> String {
        let mut path = String::new();
        for segment in &self.segments {
            path.push('/');
            path.push_str(match segment {
                Segment::Literal(literal) => literal,
                Segment::One | Segment::Rest => value,
            });
        }
        if let Some(verb) = &self.verb {
            path.push(':');
            path.push_str(verb);
        }
        path
    }

    /// The same match as [`is_match`](Self::is_match) as an RE2 regular expression over a whole
    /// `:path` (a query string allowed), for Envoy's header matchers: the rate limits key on
    /// the routes the policy rules name, with one grammar for both.
    pub fn to_regex(&self) -> String {
        let mut regex = String::from("^");
        for segment in &self.segments {
            match segment {
                Segment::Literal(literal) => {
                    regex.push('/');
                    regex.push_str(&regex_escape(literal));
                }
                Segment::One => regex.push_str("/[^/?]+"),
                Segment::Rest => regex.push_str("(/[^?]*)?"),
            }
        }
        if let Some(verb) = &self.verb {
            regex.push(':');
            regex.push_str(&regex_escape(verb));
        }
        regex.push_str(r"(\?.*)?$");
        regex
    }

    /// Orders templates so that the most specific is tried first: more literal segments (a
    /// `:verb` counts as one: `/items/{id}:watch` before `/items/{id}`, whose variable would
    /// take `42:watch` whole), then more segments, then no trailing `**`.
    pub fn specificity(&self) -> (usize, usize, bool) {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
            + usize::from(self.verb.is_some());
        let open_ended = matches!(self.segments.last(), Some(Segment::Rest));
        (literals, self.segments.len(), !open_ended)
    }

    /// Whether a path (no query string) matches, without decoding anything: the cheap check
    /// for policies and the route table. It allocates nothing and stops at the first segment
    /// that differs, since a table tries it once per route for every request.
    pub fn is_match(&self, path: &str) -> bool {
        let Some(path) = self.without_verb(path) else {
            return false;
        };
        // Split as bytes: a `str` split searches for each `/` with memchr, whose setup costs
        // more than these short segments (a table tries some 20 templates a request).
        let mut parts = path.as_bytes().split(|byte| *byte == b'/');
        for segment in &self.segments {
            let fits = match segment {
                Segment::Rest => return true,
                Segment::One => parts.next().is_some_and(|part| !part.is_empty()),
                Segment::Literal(literal) => parts.next() == Some(literal.as_bytes()),
            };
            if !fits {
                return false;
            }
        }
        parts.next().is_none()
    }

    /// The path after its leading `/` and before the template's `:verb`, if it has both.
    fn without_verb<'p>(&self, path: &'p str) -> Option<&'p str> {
        let path = path.strip_prefix('/')?;
        match &self.verb {
            Some(verb) => path.strip_suffix(verb.as_str())?.strip_suffix(':'),
            None => Some(path),
        }
    }

    /// The path's segments when it matches the template's literals, `*`s and `**`.
    fn segments_of<'p>(&self, path: &'p str) -> Option<Vec<&'p str>> {
        if !self.is_match(path) {
            return None;
        }
        Some(self.without_verb(path)?.split('/').collect())
    }

    /// Matches a path (no query string). On success returns each variable's field path and
    /// its percent-decoded value (`%2F` stays encoded in multi-segment variables, so a value's
    /// own slashes cannot be confused with the separators).
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let parts = self.segments_of(path)?;
        let mut bindings = Vec::with_capacity(self.variables.len());
        for variable in &self.variables {
            let end = variable.end.unwrap_or(parts.len()).min(parts.len());
            let captured = &parts[variable.start.min(end)..end];
            let value = if captured.len() == 1 && variable.end.is_some() {
                percent_decode(captured[0], false)?
            } else {
                percent_decode(&captured.join("/"), true)?
            };
            bindings.push((variable.field_path.clone(), value));
        }
        Some(bindings)
    }
}

fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

impl<'de> serde::Deserialize<'de> for PathTemplate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        PathTemplate::parse(&source).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_regex_matches_what_the_template_matches() {
        let templates = [
            "/catalog/items",
            "/catalog/items/*",
            "/catalog/items/*:purchase",
            "/acl/**",
            "/catalog.CatalogService/CreateItem",
        ];
        let paths = [
            "/catalog/items",
            "/catalog/items?page_size=2",
            "/catalog/items/",
            "/catalog/items/42",
            "/catalog/items/42?x=1",
            "/catalog/items/42/x",
            "/catalog/items/42:purchase",
            "/catalog/items/42:purchase?x=/y",
            "/catalog/items/:purchase",
            "/acl",
            "/acl/",
            "/acl/subjects/u/restrictions",
            "/aclx",
            "/catalog.CatalogService/CreateItem",
            "/catalogXCatalogService/CreateItem",
        ];
        for template in templates {
            let parsed = PathTemplate::parse(template).unwrap();
            let regex = regex::Regex::new(&parsed.to_regex()).unwrap();
            for path in paths {
                let without_query = path.split_once('?').map_or(path, |(p, _)| p);
                assert_eq!(
                    regex.is_match(path),
                    parsed.is_match(without_query),
                    "{template} {path} {}",
                    parsed.to_regex()
                );
            }
        }
    }

    fn bindings(template: &str, path: &str) -> Option<Vec<(String, String)>> {
        PathTemplate::parse(template).unwrap().matches(path)
    }

    fn pairs(list: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn matching_and_binding() {
        assert_eq!(bindings("/catalog/items", "/catalog/items"), pairs(&[]));
        assert_eq!(bindings("/catalog/items", "/catalog/items/"), None);
        assert_eq!(
            bindings("/catalog/items/{id}", "/catalog/items/42"),
            pairs(&[("id", "42")])
        );
        assert_eq!(bindings("/catalog/items/{id}", "/catalog/items/"), None);
        assert_eq!(bindings("/catalog/items/{id}", "/catalog/items/4/2"), None);
        assert_eq!(
            bindings("/catalog/items/{id}", "/catalog/items/a%20b%2Fc"),
            pairs(&[("id", "a b/c")])
        );
        assert_eq!(bindings("/catalog/items/{id}", "/catalog/items/%zz"), None);
        assert_eq!(
            bindings("/v1/{name=shelves/*/books/*}", "/v1/shelves/1/books/2"),
            pairs(&[("name", "shelves/1/books/2")])
        );
        assert_eq!(
            bindings("/v1/{name=shelves/*/books/*}", "/v1/shelves/1/books"),
            None
        );
        assert_eq!(
            bindings("/files/{path=**}", "/files/a/b%2Fc/d"),
            pairs(&[("path", "a/b%2Fc/d")])
        );
        assert_eq!(
            bindings("/files/{path=**}", "/files"),
            pairs(&[("path", "")])
        );
        assert_eq!(
            bindings("/v1/{book.shelf}/books:publish", "/v1/s1/books:publish"),
            pairs(&[("book.shelf", "s1")])
        );
        assert_eq!(
            bindings("/v1/{book.shelf}/books:publish", "/v1/s1/books"),
            None
        );
        assert_eq!(bindings("/v1/*/x", "/v1/anything/x"), pairs(&[]));
    }

    #[test]
    fn plain_templates_match_segments_exactly() {
        let cases = [
            ("/auth/signin", "/auth/signin", true),
            ("/auth/signin", "/auth/signin/", false),
            ("/auth/signin", "/Auth/signin", false),
            ("/catalog/items/*", "/catalog/items/42", true),
            ("/catalog/items/*", "/catalog/items/", false),
            ("/catalog/items/*", "/catalog/items/42/x", false),
            ("/catalog/*/reviews", "/catalog/42/reviews", true),
            ("/catalog/*/reviews", "/catalog//reviews", false),
            ("/catalog/**", "/catalog", true),
            ("/catalog/**", "/catalog/items/42", true),
            ("/catalog/**", "/catalogue", false),
            ("/**", "/anything/at/all", true),
            ("/items/*:purchase", "/items/42:purchase", true),
            ("/items/*:purchase", "/items/42", false),
            ("/items/{id}", "/items/%zz", true),
        ];
        for (template, path, expected) in cases {
            let parsed = PathTemplate::parse(template).unwrap();
            assert_eq!(parsed.is_match(path), expected, "{template} vs {path}");
        }
    }

    #[test]
    fn malformed_templates_are_rejected() {
        for bad in [
            "catalog",
            "/a/{id",
            "/a/{}",
            "/a/{id}/{id}",
            "/a/**/b",
            "/a/b*",
            "/a//b",
            "/a/{x=**}/b",
            "/a/x{id}",
            "/a:",
        ] {
            assert!(
                PathTemplate::parse(bad).is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn shape_ignores_variable_names_only() {
        let shape = |t: &str| PathTemplate::parse(t).unwrap().shape();
        assert_eq!(shape("/v1/{id}"), shape("/v1/{name}"));
        assert_eq!(shape("/v1/{id}"), shape("/v1/*"));
        assert_eq!(shape("/v1/{name=a/*}"), shape("/v1/a/{x}"));
        assert_ne!(shape("/v1/{id}"), shape("/v1/{id}:run"));
        assert_ne!(shape("/v1/{id}"), shape("/v1/{id=**}"));
        assert_ne!(shape("/v1/a"), shape("/v1/*"));
    }

    #[test]
    fn specific_templates_sort_first() {
        let literal = PathTemplate::parse("/catalog/items/count").unwrap();
        let variable = PathTemplate::parse("/catalog/items/{id}").unwrap();
        let open = PathTemplate::parse("/catalog/{rest=**}").unwrap();
        let verb = PathTemplate::parse("/catalog/items/{id}:watch").unwrap();
        assert!(literal.specificity() > variable.specificity());
        assert!(variable.specificity() > open.specificity());
        assert!(verb.specificity() > variable.specificity());
        assert!(
            variable.is_match("/catalog/items/42:watch"),
            "why the verb goes first"
        );
    }

    #[test]
    fn names_variables_as_openapi_paths_do() {
        let template = PathTemplate::parse("/v1/{name=shelves/*/books/*}:read").unwrap();
        assert_eq!(
            template.named_variables(),
            (
                "/v1/{name}:read".to_string(),
                vec![("name".to_string(), Some("shelves/*/books/*".to_string()))]
            )
        );
        assert_eq!(template.sample("x"), "/v1/shelves/x/books/x:read");
        let template = PathTemplate::parse("/catalog/items/{id}/image").unwrap();
        assert_eq!(
            template.named_variables(),
            (
                "/catalog/items/{id}/image".to_string(),
                vec![("id".to_string(), None)]
            )
        );
        let template = PathTemplate::parse("/files/{a.path=**}").unwrap();
        assert_eq!(
            template.named_variables(),
            (
                "/files/{a.path}".to_string(),
                vec![("a.path".to_string(), Some("**".to_string()))]
            )
        );
        assert!(template.is_match(&template.sample("x")));
    }
}
