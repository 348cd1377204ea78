//! Istio's gateway HTTP filter chain, as far as the edge is concerned, and where our filters
//! sit in it. The local bootstrap is built from this same order, so `make run` and the tests run
//! the chain a cluster runs; `tests/e2e/tests/istiod.rs` checks it against the chain a real
//! istiod builds from `istio/`.
//!
//! Istio builds a gateway's chain in `buildHTTPConnectionManager`
//! (pilot/pkg/networking/core/listener_builder.go): metadata exchange, CUSTOM authz, the
//! `AUTHN` WasmPlugins, jwt_authn (RequestAuthentication), the `AUTHZ` WasmPlugins, the RBAC
//! filters of the AuthorizationPolicies (AUDIT, DENY, ALLOW), the `STATS` and then
//! `UNSPECIFIED_PHASE` WasmPlugins, grpc_stats, alpn, fault, cors, istio.stats, the router.
//! Within a phase, a higher `priority` runs first (pilot/pkg/model/push_context.go,
//! `sortByPriority`). EnvoyFilter patches then go `INSERT_FIRST` (before all of it) or
//! `INSERT_BEFORE` the router.

/// One of our three filters, or the access log and auth as one Envoy filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    AccessLog,
    Auth,
    Transcoder,
    /// The access log and auth run by one Envoy filter, as the native build runs them (see
    /// [`paired`]).
    AccessLogAndAuth,
}

impl Filter {
    /// Its name: the .wasm file's root, the WasmPlugin, the Envoy filter (`edge.NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Filter::AccessLog => "access-log",
            Filter::Auth => "auth",
            Filter::Transcoder => "transcoder",
            Filter::AccessLogAndAuth => "access-log+auth",
        }
    }
}

/// One of our filters as a WasmPlugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plugin {
    pub filter: Filter,
    pub phase: &'static str,
    /// Higher runs first within the phase.
    pub priority: i64,
}

impl Plugin {
    pub fn name(&self) -> &'static str {
        self.filter.name()
    }

    /// Istio runs the `AUTHN` and `AUTHZ` phases before its own filters (RBAC included).
    fn before_istio_filters(&self) -> bool {
        matches!(self.phase, "AUTHN" | "AUTHZ")
    }
}

/// The access log first, so it sees every request and every local reply; auth next; then
/// Istio's RBAC (AuthorizationPolicy); the transcoder last, so that mesh policy holds for JSON
/// clients as it does for gRPC clients (a filter that answers locally stops the chain).
pub const FILTERS: [Plugin; 3] = [
    Plugin {
        filter: Filter::AccessLog,
        phase: "AUTHN",
        priority: 30,
    },
    Plugin {
        filter: Filter::Auth,
        phase: "AUTHN",
        priority: 20,
    },
    Plugin {
        filter: Filter::Transcoder,
        phase: "UNSPECIFIED_PHASE",
        priority: 10,
    },
];

/// A filter of the gateway chain that changes what the edge's requests meet. Istio's filters
/// that do not (metadata exchange, grpc_stats, alpn, fault, istio.stats) are left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Envoy's `header_mutation` filter that writes the edge span's ids for our filters (see
    /// `edge_core::trace`), `INSERT_FIRST` by our EnvoyFilter when the edge traces: every
    /// request, refused or not, is logged with its span's trace id.
    TraceContext,
    /// Envoy's CORS filter, `INSERT_FIRST` by our EnvoyFilter: Istio's own CORS filter runs
    /// after every WasmPlugin, too late to add its headers to the transcoder's replies.
    CorsFirst,
    /// Envoy's `grpc_web` and `connect_grpc_bridge` filters (`web_protocols`), `INSERT_FIRST`
    /// after CORS by our EnvoyFilter: every filter after them sees a gRPC call.
    WebProtocols,
    Plugin(Plugin),
    /// Istio's RBAC filter for DENY AuthorizationPolicies.
    RbacDeny,
    /// Istio's RBAC filter for ALLOW AuthorizationPolicies.
    RbacAllow,
    /// Envoy's `local_ratelimit` filters (`rate_limits`), inserted by our EnvoyFilter right
    /// before the transcoder: after auth, which sets the subject they key on, and before the
    /// transcoder, which answers JSON requests itself.
    RateLimits,

    /// Envoy's buffer filter, `INSERT_BEFORE` the router by our EnvoyFilter: it holds request
    /// headers while the transcoder reads the body.
    Buffer,
    Router,
}

const PHASES: [&str; 4] = ["AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE"];

/// What the edge's configuration adds to the chain.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChainFeatures {
    /// CORS settings.
    pub cors: bool,
    /// AuthorizationPolicies with action DENY.
    pub deny: bool,
    /// AuthorizationPolicies with action ALLOW.
    pub allow: bool,
    pub rate_limits: bool,
    /// Tracing.
    pub trace_context: bool,
    /// gRPC-Web or Connect.
    pub web_protocols: bool,
}

/// Where an EnvoyFilter puts a slot's filters to give Istio's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patch {
    /// `INSERT_FIRST`: before every filter of Istio's.
    First,
    /// `INSERT_BEFORE` the router: after Istio's filters.
    BeforeRouter,
    /// Istio builds it itself.
    Istio,
}

impl Slot {
    pub fn patch(self) -> Patch {
        match self {
            Slot::TraceContext | Slot::CorsFirst | Slot::WebProtocols => Patch::First,
            Slot::Plugin(plugin) if plugin.before_istio_filters() => Patch::First,
            Slot::Plugin(_) | Slot::RateLimits | Slot::Buffer => Patch::BeforeRouter,
            Slot::RbacDeny | Slot::RbacAllow | Slot::Router => Patch::Istio,
        }
    }
}

/// The chain in Istio's order.
pub fn chain(features: ChainFeatures) -> Vec<Slot> {
    let mut slots = Vec::new();
    if features.trace_context {
        slots.push(Slot::TraceContext);
    }
    if features.cors {
        slots.push(Slot::CorsFirst);
    }
    if features.web_protocols {
        slots.push(Slot::WebProtocols);
    }
    for phase in PHASES {
        if phase == "UNSPECIFIED_PHASE" && features.rate_limits {
            slots.push(Slot::RateLimits);
        }
        let mut plugins: Vec<&Plugin> = FILTERS.iter().filter(|p| p.phase == phase).collect();
        plugins.sort_by_key(|plugin| std::cmp::Reverse(plugin.priority));
        slots.extend(plugins.iter().map(|plugin| Slot::Plugin(**plugin)));
        // Istio's own authz comes right after the AUTHZ plugins.
        if phase == "AUTHZ" {
            if features.deny {
                slots.push(Slot::RbacDeny);
            }
            if features.allow {
                slots.push(Slot::RbacAllow);
            }
        }
    }
    slots.extend([Slot::Buffer, Slot::Router]);
    slots
}

/// The chain with the access log and auth, wherever they are side by side (in every chain
/// [`chain`] builds), as one filter in the access log's place. The native build runs them so:
/// one filter fewer for Envoy to create per request, and auth takes the headers the access
/// log read instead of another copy of Envoy's (7k fewer instructions on a refused request,
/// 4%). The Wasm build cannot gain so: each WasmPlugin is its own Envoy filter.
pub fn paired(slots: Vec<Slot>) -> Vec<Slot> {
    let mut out: Vec<Slot> = Vec::with_capacity(slots.len());
    for slot in slots {
        match (out.last_mut(), slot) {
            (Some(Slot::Plugin(first)), Slot::Plugin(second))
                if first.filter == Filter::AccessLog && second.filter == Filter::Auth =>
            {
                first.filter = Filter::AccessLogAndAuth;
            }
            _ => out.push(slot),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_first_then_auth_then_mesh_policy_then_the_transcoder() {
        let everything = ChainFeatures {
            cors: true,
            deny: true,
            allow: true,
            rate_limits: true,
            trace_context: true,
            web_protocols: true,
        };
        let in_order = vec![
            Slot::TraceContext,
            Slot::CorsFirst,
            Slot::WebProtocols,
            Slot::Plugin(FILTERS[0]),
            Slot::Plugin(FILTERS[1]),
            Slot::RbacDeny,
            Slot::RbacAllow,
            Slot::RateLimits,
            Slot::Plugin(FILTERS[2]),
            Slot::Buffer,
            Slot::Router,
        ];
        assert_eq!(chain(everything), in_order);
        assert_eq!(
            chain(ChainFeatures::default()),
            vec![
                Slot::Plugin(FILTERS[0]),
                Slot::Plugin(FILTERS[1]),
                Slot::Plugin(FILTERS[2]),
                Slot::Buffer,
                Slot::Router,
            ]
        );
        let pair = Plugin {
            filter: Filter::AccessLogAndAuth,
            ..FILTERS[0]
        };
        // The access log and auth in the access log's place.
        let mut paired_in_order = in_order.clone();
        paired_in_order.splice(3..5, [Slot::Plugin(pair)]);
        assert_eq!(paired(chain(everything)), paired_in_order);
        assert_eq!(pair.name(), "access-log+auth");
        assert_eq!(Slot::Plugin(pair).patch(), Patch::First);
        // Apart, they stay apart.
        let apart = vec![
            Slot::Plugin(FILTERS[0]),
            Slot::RbacDeny,
            Slot::Plugin(FILTERS[1]),
        ];
        assert_eq!(paired(apart.clone()), apart);
        let patches: Vec<Patch> = chain(everything).into_iter().map(Slot::patch).collect();
        use Patch::{BeforeRouter, First, Istio};
        assert_eq!(
            patches,
            [
                First,
                First,
                First,
                First,
                First,
                Istio,
                Istio,
                BeforeRouter,
                BeforeRouter,
                BeforeRouter,
                Istio
            ]
        );
    }
}
