//! Istio AuthorizationPolicies as Envoy's RBAC filters, the way Istio translates them
//! (pilot/pkg/security/authz/builder and model): one RBAC filter per action, a policy per rule
//! named `ns[NS]-policy[NAME]-rule[N]`, `to` operations as permissions, `from` sources and
//! `when` conditions on request headers as principals. Only the fields the edge's policies use
//! are translated; any other field is an error, so a local run never silently differs from the
//! mesh.

use serde_json::{json, Value};

/// The RBAC filter of Istio's for the policies with `action` (`DENY` or `ALLOW`), or `None`
/// when no policy has that action.
pub fn rbac_filter(policies: &[Value], action: &str) -> Result<Option<Value>, String> {
    let mut rules = serde_json::Map::new();
    for policy in policies {
        if policy["kind"] != "AuthorizationPolicy" {
            continue;
        }
        let name = policy["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = policy["metadata"]["namespace"].as_str().unwrap_or_default();
        let spec = &policy["spec"];
        let policy_action = spec["action"].as_str().unwrap_or("ALLOW");
        if policy_action != action {
            continue;
        }
        let context = |what: &str| format!("AuthorizationPolicy {namespace}/{name}: {what}");
        for (index, rule) in spec["rules"].as_array().into_iter().flatten().enumerate() {
            known_fields(rule, &["from", "to", "when"]).map_err(|e| context(&e))?;
            let permissions = match rule["to"].as_array() {
                None => vec![json!({ "and_rules": { "rules": [{ "any": true }] } })],
                Some(operations) => operations
                    .iter()
                    .map(|to| operation(&to["operation"]))
                    .collect::<Result<_, _>>()
                    .map_err(|e| context(&e))?,
            };
            let mut ids: Vec<Value> = Vec::new();
            for from in rule["from"].as_array().into_iter().flatten() {
                ids.extend(source(&from["source"]).map_err(|e| context(&e))?);
            }
            for condition in rule["when"].as_array().into_iter().flatten() {
                ids.extend(when(condition).map_err(|e| context(&e))?);
            }
            if ids.is_empty() {
                ids.push(json!({ "any": true }));
            }
            let principals = vec![json!({ "and_ids": { "ids": ids } })];
            rules.insert(
                format!("ns[{namespace}]-policy[{name}]-rule[{index}]"),
                json!({ "permissions": permissions, "principals": principals }),
            );
        }
    }
    if rules.is_empty() {
        return Ok(None);
    }
    Ok(Some(json!({
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": { "action": action, "policies": rules },
            // What Istio sets even without dry-run rules.
            "shadow_rules_stat_prefix": "istio_dry_run_allow_"
        }
    })))
}

fn known_fields(object: &Value, known: &[&str]) -> Result<(), String> {
    match object
        .as_object()
        .and_then(|o| o.keys().find(|k| !known.contains(&k.as_str())))
    {
        Some(field) => Err(format!("{field} is not translated for the local chain")),
        None => Ok(()),
    }
}

/// Istio's string matching: `*` alone is any non-empty value, `x*` a prefix, `*x` a suffix.
fn string_match(value: &str) -> Value {
    if value == "*" {
        json!({ "safe_regex": { "regex": ".+" } })
    } else if let Some(prefix) = value.strip_suffix('*') {
        json!({ "prefix": prefix })
    } else if let Some(suffix) = value.strip_prefix('*') {
        json!({ "suffix": suffix })
    } else {
        json!({ "exact": value })
    }
}

fn strings<'v>(object: &'v Value, field: &str) -> Vec<&'v str> {
    object[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// A header matcher as Istio's `HeaderMatcher` builds it: `*` is "present".
fn header(name: &str, value: &str, ignore_case: bool) -> Value {
    if value == "*" {
        return json!({ "header": { "name": name, "present_match": true } });
    }
    let mut matcher = string_match(value);
    if ignore_case {
        matcher["ignore_case"] = json!(true);
    }
    json!({ "header": { "name": name, "string_match": matcher } })
}

/// `to.operation`: every listed field must match, any value of a field.
fn operation(operation: &Value) -> Result<Value, String> {
    known_fields(operation, &["hosts", "methods", "paths"])?;
    let mut rules = Vec::new();
    let header_rule = |name: &str, values: Vec<&str>, ignore_case: bool| {
        let matches: Vec<Value> = values
            .iter()
            .map(|value| header(name, value, ignore_case))
            .collect();
        json!({ "or_rules": { "rules": matches } })
    };
    // Hosts without case (Istio's `HostMatcher`), exactly as the client sent `:authority`.
    let hosts = strings(operation, "hosts");
    if !hosts.is_empty() {
        rules.push(header_rule(":authority", hosts, true));
    }
    let methods = strings(operation, "methods");
    if !methods.is_empty() {
        rules.push(header_rule(":method", methods, false));
    }
    let paths = strings(operation, "paths");
    if !paths.is_empty() {
        let matches: Vec<Value> = paths
            .iter()
            .map(|path| json!({ "url_path": { "path": string_match(path) } }))
            .collect();
        rules.push(json!({ "or_rules": { "rules": matches } }));
    }
    if rules.is_empty() {
        rules.push(json!({ "any": true }));
    }
    Ok(json!({ "and_rules": { "rules": rules } }))
}

/// `from.source`: the client's address, direct (`ipBlocks`) or as forwarded
/// (`remoteIpBlocks`).
fn source(source: &Value) -> Result<Vec<Value>, String> {
    known_fields(source, &["ipBlocks", "remoteIpBlocks"])?;
    let mut all = Vec::new();
    for (field, kind) in [
        ("ipBlocks", "direct_remote_ip"),
        ("remoteIpBlocks", "remote_ip"),
    ] {
        let mut ids = Vec::new();
        for block in strings(source, field) {
            let (address, length) = block.split_once('/').unwrap_or((block, ""));
            let length: u32 = match length {
                "" if address.contains(':') => 128,
                "" => 32,
                bits => bits
                    .parse()
                    .map_err(|_| format!("{field}: bad prefix length in {block}"))?,
            };
            ids.push(json!({ kind: { "address_prefix": address, "prefix_len": length } }));
        }
        if !ids.is_empty() {
            all.push(json!({ "or_ids": { "ids": ids } }));
        }
    }
    Ok(all)
}

/// `when: request.headers[NAME]` with `values` (any of them) or `notValues` (none of them;
/// `notValues: ["*"]` is "the header is absent").
fn when(condition: &Value) -> Result<Vec<Value>, String> {
    known_fields(condition, &["key", "values", "notValues"])?;
    let key = condition["key"].as_str().unwrap_or_default();
    let header = key
        .strip_prefix("request.headers[")
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or_else(|| format!("when: {key} is not translated for the local chain"))?
        .to_ascii_lowercase();
    let ids = |values: Vec<&str>| -> Vec<Value> {
        values
            .iter()
            .map(|value| self::header(&header, value, false))
            .collect()
    };
    let mut all = Vec::new();
    let values = strings(condition, "values");
    if !values.is_empty() {
        all.push(json!({ "or_ids": { "ids": ids(values) } }));
    }
    let not_values = strings(condition, "notValues");
    if !not_values.is_empty() {
        all.push(json!({ "not_id": { "or_ids": { "ids": ids(not_values) } } }));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_conditions_are_principals_and_not_values_star_means_absent() {
        let policies = vec![policy(
            "DENY",
            json!([{
                "to": [{ "operation": { "hosts": ["partner.example.com"], "methods": ["POST"] } }],
                "when": [{ "key": "request.headers[x-partner-key]", "notValues": ["*"] }]
            }]),
        )];
        let deny = rbac_filter(&policies, "DENY").unwrap().unwrap();
        let rule = &deny["typed_config"]["rules"]["policies"]["ns[istio-system]-policy[p]-rule[0]"];
        assert_eq!(
            rule["permissions"],
            json!([{ "and_rules": { "rules": [
                { "or_rules": { "rules": [{ "header": { "name": ":authority", "string_match": { "exact": "partner.example.com", "ignore_case": true } } }] } },
                { "or_rules": { "rules": [{ "header": { "name": ":method", "string_match": { "exact": "POST" } } }] } }
            ] } }])
        );
        assert_eq!(
            rule["principals"],
            json!([{ "and_ids": { "ids": [
                { "not_id": { "or_ids": { "ids": [{ "header": { "name": "x-partner-key", "present_match": true } }] } } }
            ] } }])
        );
    }

    use super::*;

    fn policy(action: &str, rules: Value) -> Value {
        json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": { "name": "p", "namespace": "istio-system" },
            "spec": { "action": action, "rules": rules }
        })
    }

    #[test]
    fn one_filter_per_action_and_a_policy_per_rule() {
        let policies = vec![
            policy(
                "DENY",
                json!([{ "when": [{ "key": "request.headers[User-Agent]", "values": ["BadBot*"] }] }]),
            ),
            policy("ALLOW", json!([{}])),
        ];
        let deny = rbac_filter(&policies, "DENY").unwrap().unwrap();
        let rules = &deny["typed_config"]["rules"];
        assert_eq!(rules["action"], "DENY");
        let rule = &rules["policies"]["ns[istio-system]-policy[p]-rule[0]"];
        assert_eq!(
            rule["permissions"],
            json!([{ "and_rules": { "rules": [{ "any": true }] } }])
        );
        let header = &rule["principals"][0]["and_ids"]["ids"][0]["or_ids"]["ids"][0]["header"];
        assert_eq!(header["name"], "user-agent");
        assert_eq!(header["string_match"], json!({ "prefix": "BadBot" }));
        assert!(rbac_filter(&policies, "ALLOW").unwrap().is_some());
        assert!(rbac_filter(&policies[..1], "ALLOW").unwrap().is_none());
    }

    #[test]
    fn untranslated_fields_are_errors_not_silence() {
        let policies = vec![policy(
            "DENY",
            json!([{ "from": [{ "source": { "principals": ["cluster.local/ns/a/sa/b"] } }] }]),
        )];
        assert!(rbac_filter(&policies, "DENY")
            .unwrap_err()
            .contains("principals"));
        let policies = vec![policy(
            "DENY",
            json!([{ "when": [{ "key": "source.ip", "values": ["1.2.3.4"] }] }]),
        )];
        assert!(rbac_filter(&policies, "DENY").is_err());
    }

    #[test]
    fn strings_match_as_istio_matches_them() {
        assert_eq!(
            string_match("*"),
            json!({ "safe_regex": { "regex": ".+" } })
        );
        assert_eq!(string_match("/v1/*"), json!({ "prefix": "/v1/" }));
        assert_eq!(string_match("*.png"), json!({ "suffix": ".png" }));
        assert_eq!(string_match("POST"), json!({ "exact": "POST" }));
    }
}
