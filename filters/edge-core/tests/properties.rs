//! Property tests of the one path grammar: the regular expression a template renders for
//! Envoy's matchers (rate limits, the native bench chain) matches exactly the paths the template
//! matches, and no path or template text makes the matcher or the percent-decoder panic.

use edge_core::{percent_decode, PathTemplate};
use proptest::prelude::*;

fn template() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop_oneof![
                Just("a"),
                Just("b.c"),
                Just("*"),
                Just("{x}"),
                Just("{y=*}")
            ],
            1..=3,
        ),
        prop::option::weighted(0.2, Just("**")),
        prop::option::weighted(0.2, Just(":do")),
    )
        .prop_map(|(segments, rest, verb)| {
            // Each variable binds its own field.
            let segments: Vec<String> = segments
                .iter()
                .enumerate()
                .map(|(i, segment)| match *segment {
                    "{x}" => format!("{{x{i}}}"),
                    "{y=*}" => format!("{{y{i}=*}}"),
                    literal => literal.to_string(),
                })
                .collect();
            let mut template = format!("/{}", segments.join("/"));
            if let Some(rest) = rest {
                template.push('/');
                template.push_str(rest);
            }
            template.push_str(verb.unwrap_or(""));
            template
        })
}

fn path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop_oneof!["a", "b.c", "bxc", "", "%2F", "a:do", "é"],
            0..=4,
        ),
        prop::option::weighted(0.3, Just(":do")),
        prop::option::weighted(0.3, Just("?x=/a:do")),
    )
        .prop_map(|(segments, verb, query)| {
            format!(
                "/{}{}{}",
                segments.join("/"),
                verb.unwrap_or(""),
                query.unwrap_or("")
            )
        })
}

proptest! {
    #[test]
    fn the_regex_matches_what_the_template_matches(template in template(), path in path()) {
        let parsed = PathTemplate::parse(&template).unwrap();
        let regex = regex::Regex::new(&parsed.to_regex()).unwrap();
        let without_query = path.split('?').next().unwrap_or(&path);
        prop_assert_eq!(regex.is_match(&path), parsed.is_match(without_query), "{} {}", parsed.to_regex(), path);
    }

    #[test]
    fn no_text_panics_the_matcher(template in "\\PC{0,40}", path in "\\PC{0,60}") {
        if let Ok(parsed) = PathTemplate::parse(&template) {
            let _ = parsed.matches(&path);
            let _ = regex::Regex::new(&parsed.to_regex()).map(|r| r.is_match(&path));
        }
        let _ = percent_decode(&path, true);
        let _ = percent_decode(&path, false);
    }
}
