//! Strict prompt rendering: fills `{{name}}` placeholders in a template with given values.
//!
//! Owns the placeholder syntax and its errors. Never leaves a placeholder unfilled, never
//! accepts a value the template does not use (both break a handoff silently: LESSONS), and
//! never re-scans inserted values (a card containing `{{x}}` is inserted as is). Knows nothing
//! about which templates or variables exist; callers supply both.
//!
//! Syntax: `{{name}}` or `{{ name }}` on one line, `name` matching `[a-z_][a-z0-9_]*`. Every
//! `{{` in a template opens a placeholder: there is **no escaping**, so a template cannot
//! contain a literal `{{` (a stray `}}` is fine and stays literal, which JSON examples need).

/// Why a template could not be rendered. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("placeholder `{{{{{name}}}}}` on line {line} has no value")]
    Unfilled { name: String, line: usize },
    #[error("value `{name}` is given but the template never uses it")]
    Unused { name: String },
    #[error("malformed placeholder on line {line}: expected `{{{{name}}}}` on one line")]
    Malformed { line: usize },
}

/// Renders `template`, replacing each placeholder with its value from `vars`.
///
/// Values are inserted literally and never scanned again. If a name is given twice, the first
/// value is used and the second counts as unused.
///
/// ```
/// use nightshift::prompt::render;
/// let out = render("Stage {{stage}}, attempt {{ attempt }}.", &[("stage", "a"), ("attempt", "2")]);
/// assert_eq!(out.as_deref(), Ok("Stage a, attempt 2."));
/// ```
///
/// # Errors
///
/// The first problem in template order: [`RenderError::Malformed`] for a `{{` with no `}}` on
/// its line or with an invalid name inside, [`RenderError::Unfilled`] for a placeholder with no
/// value; then [`RenderError::Unused`] for the first value the template never used.
pub fn render(template: &str, vars: &[(&str, &str)]) -> Result<String, RenderError> {
    let mut used = vec![false; vars.len()];
    let mut out = String::with_capacity(template.len());
    for (index, line) in template.split_inclusive('\n').enumerate() {
        render_line(line, index + 1, vars, &mut used, &mut out)?;
    }
    let unused = vars
        .iter()
        .zip(&used)
        .find(|(_, used)| !**used)
        .map(|((name, _), _)| name);
    match unused {
        Some(name) => Err(RenderError::Unused {
            name: (*name).to_owned(),
        }),
        None => Ok(out),
    }
}

fn render_line(
    line: &str,
    number: usize,
    vars: &[(&str, &str)],
    used: &mut [bool],
    out: &mut String,
) -> Result<(), RenderError> {
    let mut rest = line;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or(RenderError::Malformed { line: number })?;
        let name = after[..close].trim_matches(|c| c == ' ' || c == '\t');
        if !is_name(name) {
            return Err(RenderError::Malformed { line: number });
        }
        let slot = vars.iter().position(|(n, _)| *n == name);
        let Some(slot) = slot else {
            return Err(RenderError::Unfilled {
                name: name.to_owned(),
                line: number,
            });
        };
        used[slot] = true;
        out.push_str(vars[slot].1);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(())
}

fn is_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b == b'_' || b.is_ascii_lowercase())
        && bytes.all(|b| b == b'_' || b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_placeholders_with_and_without_spaces() {
        let out = render(
            "Hi {{name}}!\nStage {{ stage_id }} / {{name}} / {{\tn2 }}\n",
            &[("name", "Ada"), ("stage_id", "s-1"), ("n2", "x")],
        );
        assert_eq!(out.unwrap(), "Hi Ada!\nStage s-1 / Ada / x\n");
    }

    #[test]
    fn template_without_placeholders_is_unchanged() {
        let text = "no placeholders; JSON {\"a\": {\"b\": 1}} and }} stay\n";
        assert_eq!(render(text, &[]).unwrap(), text);
        assert_eq!(render("", &[]).unwrap(), "");
    }

    #[test]
    fn unfilled_placeholder_names_its_line() {
        let err = render("one\ntwo {{a}}\nthree {{ stage_id }}", &[("a", "1")]).unwrap_err();
        assert_eq!(
            err,
            RenderError::Unfilled {
                name: "stage_id".to_owned(),
                line: 3
            }
        );
        assert_eq!(
            err.to_string(),
            "placeholder `{{stage_id}}` on line 3 has no value"
        );
    }

    #[test]
    fn unused_value_is_an_error() {
        let err = render("{{a}}", &[("a", "1"), ("b", "2")]).unwrap_err();
        assert_eq!(
            err,
            RenderError::Unused {
                name: "b".to_owned()
            }
        );
        assert_eq!(
            err.to_string(),
            "value `b` is given but the template never uses it"
        );
    }

    #[test]
    fn a_name_given_twice_is_unused_the_second_time() {
        let err = render("{{a}}", &[("a", "1"), ("a", "2")]).unwrap_err();
        assert_eq!(
            err,
            RenderError::Unused {
                name: "a".to_owned()
            }
        );
    }

    #[test]
    fn unclosed_placeholder_is_malformed() {
        assert_eq!(
            render("ok\nbad {{name\n}}", &[("name", "x")]),
            Err(RenderError::Malformed { line: 2 })
        );
        assert_eq!(render("{{", &[]), Err(RenderError::Malformed { line: 1 }));
        assert_eq!(
            render("a {{x}} b {{y", &[("x", "1"), ("y", "2")]),
            Err(RenderError::Malformed { line: 1 })
        );
    }

    #[test]
    fn invalid_names_are_malformed() {
        for bad in [
            "{{}}", "{{ }}", "{{Name}}", "{{1st}}", "{{a-b}}", "{{a b}}", "{{{a}}}", "{{é}}",
        ] {
            assert_eq!(
                render(bad, &[("a", "1")]),
                Err(RenderError::Malformed { line: 1 }),
                "{bad}"
            );
        }
    }

    #[test]
    fn values_are_not_rescanned() {
        let out = render("card: {{card}}", &[("card", "use {{x}} and {{ and }}")]);
        assert_eq!(out.unwrap(), "card: use {{x}} and {{ and }}");
    }

    #[test]
    fn malformed_comes_before_unused() {
        assert_eq!(
            render("{{a", &[("b", "1")]),
            Err(RenderError::Malformed { line: 1 })
        );
    }

    #[test]
    fn crlf_and_multibyte_text_survive() {
        let out = render("été {{x}}\r\n— {{x}} 🌙\r\n", &[("x", "ü")]);
        assert_eq!(out.unwrap(), "été ü\r\n— ü 🌙\r\n");
    }

    #[test]
    fn large_template_renders_linearly() {
        let template = "line {{n}} with text\n".repeat(100_000);
        let out = render(&template, &[("n", "7")]).unwrap();
        assert_eq!(out.len(), "line 7 with text\n".len() * 100_000);
    }
}
