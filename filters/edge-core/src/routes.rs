//! Which route of a table (HTTP method + path template) a request hits, or why none does: an
//! unknown path is 404, a known path with another method is 405 with the methods it allows —
//! what grpc-gateway and Envoy's routes tell clients. The transcoder and auth's table of the
//! routes the edge serves both decide with this.

use crate::{Client, GrpcCode, LocalReply, PathTemplate};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    /// The index of the first route whose method and template match.
    Found(usize),
    /// Some template matches the path, none with this method; `allow` is the `Allow` header.
    MethodNotAllowed {
        allow: String,
    },
    NotFound,
}

/// The path of a `:path`, without its query string.
pub fn path_only(path: &str) -> &str {
    path.split_once('?').map_or(path, |(path, _)| path)
}

/// Why no route serves a request, and the one reply both filters send for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    /// `allow` is the `Allow` header.
    MethodNotAllowed {
        allow: String,
    },
}

impl RouteError {
    /// `None` when the route was found.
    pub fn of(route: RouteMatch) -> Option<Self> {
        match route {
            RouteMatch::Found(_) => None,
            RouteMatch::NotFound => Some(Self::NotFound),
            RouteMatch::MethodNotAllowed { allow } => Some(Self::MethodNotAllowed { allow }),
        }
    }

    /// The name it is counted and logged under.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotFound => "no_route",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
        }
    }

    /// 404, or 405 with `Allow`; a gRPC client is told UNIMPLEMENTED, as a gRPC server would.
    pub fn reply(&self, client: Client, method: &str, path: &str) -> LocalReply {
        let path = path_only(path);
        match (client, self) {
            (Client::Grpc, _) => {
                LocalReply::error(GrpcCode::Unimplemented, format!("unknown method {path}"))
            }
            (Client::Http, Self::NotFound) => {
                LocalReply::error(GrpcCode::NotFound, format!("no route for {method} {path}"))
            }
            (Client::Http, Self::MethodNotAllowed { allow }) => LocalReply::error(
                GrpcCode::Unimplemented,
                format!("method {method} is not allowed on {path}"),
            )
            .with_http_status(405)
            .with_header("allow", allow.as_str()),
        }
    }
}

/// Finds the first route for `method` and `path` (a query string is ignored). Put the most
/// specific templates first: the first match wins.
pub fn match_route<'r, R>(routes: R, method: &str, path: &str) -> RouteMatch
where
    R: IntoIterator<Item = (&'r str, &'r PathTemplate)>,
    R::IntoIter: Clone,
{
    let path = path_only(path);
    let routes = routes.into_iter();
    // A last segment ending in one of the table's custom verbs names that custom method: a
    // template without a verb does not take `42:purchase` as its variable's value (as Envoy's
    // transcoder and grpc-gateway read such paths). Only paths with a ':' pay for the scan.
    let custom_verb = path
        .rsplit('/')
        .next()
        .and_then(|last| last.rsplit_once(':'))
        .is_some_and(|(_, verb)| routes.clone().any(|(_, t)| t.verb() == Some(verb)));
    let routes = routes
        .enumerate()
        .filter(|(_, (_, template))| !custom_verb || template.verb().is_some());
    let mut allowed: Vec<&str> = Vec::new();
    for (index, (route_method, template)) in routes {
        if !template.is_match(path) {
            continue;
        }
        if route_method.eq_ignore_ascii_case(method) {
            return RouteMatch::Found(index);
        }
        if !allowed.iter().any(|m| m.eq_ignore_ascii_case(route_method)) {
            allowed.push(route_method);
        }
    }
    if allowed.is_empty() {
        RouteMatch::NotFound
    } else {
        RouteMatch::MethodNotAllowed {
            allow: allowed
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Vec<(&'static str, PathTemplate)> {
        [
            ("GET", "/items/count"),
            ("GET", "/items/{id}"),
            ("DELETE", "/items/{id}"),
            ("get", "/items"),
            ("POST", "/items"),
            ("POST", "/items/{id}:purchase"),
        ]
        .into_iter()
        .map(|(method, path)| (method, PathTemplate::parse(path).unwrap()))
        .collect()
    }

    fn find(method: &str, path: &str) -> RouteMatch {
        let table = table();
        match_route(table.iter().map(|(m, t)| (*m, t)), method, path)
    }

    #[test]
    fn first_matching_route_wins() {
        assert_eq!(find("GET", "/items/count"), RouteMatch::Found(0));
        assert_eq!(find("GET", "/items/42"), RouteMatch::Found(1));
        assert_eq!(find("delete", "/items/42?force=1"), RouteMatch::Found(2));
        assert_eq!(find("POST", "/items/42:purchase"), RouteMatch::Found(5));
    }

    #[test]
    fn known_path_with_another_method_lists_the_allowed_ones() {
        assert_eq!(
            find("PUT", "/items/42"),
            RouteMatch::MethodNotAllowed {
                allow: "GET, DELETE".into()
            }
        );
        assert_eq!(
            find("DELETE", "/items"),
            RouteMatch::MethodNotAllowed {
                allow: "GET, POST".into()
            }
        );
    }

    #[test]
    fn a_custom_verb_names_its_method_not_a_variables_value() {
        assert_eq!(
            find("GET", "/items/42:purchase"),
            RouteMatch::MethodNotAllowed {
                allow: "POST".into()
            }
        );
        // Not a verb of the table: part of the id.
        assert_eq!(find("GET", "/items/a:b"), RouteMatch::Found(1));
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for path in ["/no/such/route", "/items/", "/Items", "/items/4/2", "/"] {
            assert_eq!(find("GET", path), RouteMatch::NotFound, "{path}");
        }
    }
}
