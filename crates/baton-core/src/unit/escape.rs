//! Escaping values for a systemd unit file, each quote function beside its unquote: what
//! [`super::render`] writes, [`super::readback`] and [`crate::result`] read back the same way.
//!
//! systemd reads a value in passes: specifiers first (`%%` is a literal `%`), then, for the keys
//! that split words (`ExecStart=`, `Environment=`), quotes and C escapes, then for command lines
//! variables (`$$` is a literal `$`). Every function here escapes for all the passes of the place
//! its value goes, so that no value can add a directive, expand a `%` specifier or a `$`
//! variable.

use std::fmt::Write as _;

/// Quotes one `ExecStart=` argument: double quotes, C escapes for `\`, `"` and control
/// characters, `$$` for `$` and `%%` for `%`. [`unquote_exec_args`] reads it back.
pub(crate) fn quote_exec_arg(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    push_quoted(&mut out, arg, true);
    out.push('"');
    out
}

/// Quotes a whole command line, argument by argument ([`quote_exec_arg`]), separated by spaces.
pub(crate) fn quote_exec_args<S: AsRef<str>>(args: &[S]) -> String {
    args.iter().map(|a| quote_exec_arg(a.as_ref())).collect::<Vec<_>>().join(" ")
}

/// Splits an `ExecStart=` command line into its arguments: the inverse of [`quote_exec_args`].
/// Lenient with lines baton did not write: an unquoted word is taken as it is.
pub(crate) fn unquote_exec_args(value: &str) -> Vec<String> {
    unquote_words(value, true)
}

/// Quotes one `Environment=` assignment `KEY=value`: double quotes, C escapes and `%%`.
/// `Environment=` does not expand `$`, so a `$` stays as it is. `unquote_env` reads it back.
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))] // also in `crate::testing`
pub fn quote_env(key: &str, value: &str) -> String {
    let escaped = escape_env_value(value);
    let mut out = String::with_capacity(key.len() + escaped.len() + 3);
    out.push('"');
    out.push_str(key);
    out.push('=');
    out.push_str(&escaped);
    out.push('"');
    out
}

/// An `Environment=` value as [`quote_env`] writes it between `KEY=` and the closing quote.
pub(crate) fn escape_env_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_quoted(&mut out, value, false);
    out
}

/// The assignments of an `Environment=` line, `(KEY, value)` in order: the inverse of
/// [`quote_env`] (and of several quoted assignments on one line). A word without `=` is
/// skipped, as systemd ignores it.
pub(crate) fn unquote_env(value: &str) -> Vec<(String, String)> {
    unquote_words(value, false)
        .into_iter()
        .filter_map(|word| word.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// The key of an `Environment=` line that holds exactly one assignment in [`quote_env`]'s form
/// (`"KEY=…"`, with a key of letters, digits and `_`); `None` for any other form.
pub(crate) fn single_env_key(value: &str) -> Option<String> {
    if !(value.len() >= 2 && value.starts_with('"') && value.ends_with('"')) {
        return None;
    }
    match unquote_env(value).as_slice() {
        [(key, _)] if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Some(key.clone())
        }
        _ => None,
    }
}

/// Escapes a plain directive value: `%%` for `%`, and for command lines (`Exec*` keys) `$$` for
/// `$`. [`unescape_directive`] reads it back.
pub(crate) fn escape_directive(key: &str, value: &str) -> String {
    let is_command = is_command(key);
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '%' => out.push_str("%%"),
            '$' if is_command => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

/// Undoes [`escape_directive`]: `%%` → `%`, and in `Exec*` keys `$$` → `$`.
pub(crate) fn unescape_directive(key: &str, value: &str) -> String {
    let value = value.replace("%%", "%");
    if is_command(key) {
        value.replace("$$", "$")
    } else {
        value
    }
}

/// Escapes a path value (`WorkingDirectory=`, `EnvironmentFile=`): `%%` for `%`.
/// [`unescape_path`] reads it back.
pub(crate) fn escape_path(value: &str) -> String {
    value.replace('%', "%%")
}

/// Undoes [`escape_path`]: `%%` → `%`.
pub(crate) fn unescape_path(value: &str) -> String {
    value.replace("%%", "%")
}

/// Whether `key` is a command line, whose values systemd expands `$` in.
fn is_command(key: &str) -> bool {
    key.starts_with("Exec")
}

/// Appends `value` escaped for the inside of a double-quoted word: C escapes for `\`, `"` and
/// control characters, `%%` for `%`, and with `dollars` `$$` for `$`.
fn push_quoted(out: &mut String, value: &str, dollars: bool) {
    for c in value.chars() {
        match c {
            '$' if dollars => out.push_str("$$"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Splits space-separated double-quoted words, undoing C escapes, `%%` and (with `dollars`)
/// `$$`: the inverse of [`push_quoted`] for every word. Unquoted words are taken as they are.
fn unquote_words(value: &str, dollars: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            break;
        };
        let mut word = String::new();
        if first != '"' {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
            out.push(word);
            continue;
        }
        chars.next();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('x') => push_hex(&mut word, &mut chars, 2),
                    Some('u') => push_hex(&mut word, &mut chars, 4),
                    Some('U') => push_hex(&mut word, &mut chars, 8),
                    Some('n') => word.push('\n'),
                    Some('t') => word.push('\t'),
                    Some('r') => word.push('\r'),
                    Some(other) => word.push(other),
                    None => {}
                },
                '%' if chars.peek() == Some(&'%') => {
                    chars.next();
                    word.push('%');
                }
                '$' if dollars && chars.peek() == Some(&'$') => {
                    chars.next();
                    word.push('$');
                }
                c => word.push(c),
            }
        }
        out.push(word);
    }
    out
}

/// Reads `digits` hex digits of a `\x`, `\u` or `\U` escape and appends the character.
fn push_hex(word: &mut String, chars: &mut std::iter::Peekable<std::str::Chars<'_>>, digits: usize) {
    let hex: String = (0..digits).filter_map(|_| chars.next()).collect();
    if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
        word.push(c);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn quoting_rules() {
        assert_eq!(quote_exec_arg("a b"), r#""a b""#);
        assert_eq!(quote_exec_arg("$X%y\"\\"), r#""$$X%%y\"\\""#);
        assert_eq!(quote_exec_arg("\t"), r#""\x09""#);
        assert_eq!(quote_exec_arg("\u{85}"), r#""\u0085""#);
        assert_eq!(quote_env("K", "$X%y\"\\"), r#""K=$X%%y\"\\""#);
        assert_eq!(escape_env_value("$X%y\"\\"), r#"$X%%y\"\\"#);
        assert_eq!(escape_directive("ExecStartPre", "/bin/echo $A 5%"), "/bin/echo $$A 5%%");
        assert_eq!(escape_directive("Nice", "$A 5%"), "$A 5%%");
        assert_eq!(escape_path("/srv/50%"), "/srv/50%%");
    }

    #[test]
    fn unquoting_is_lenient_with_lines_baton_did_not_write() {
        assert_eq!(unquote_exec_args("/bin/x  a \"b c\""), ["/bin/x", "a", "b c"]);
        assert_eq!(
            unquote_env("A=1 \"B=2 3\" junk"),
            [("A".to_owned(), "1".to_owned()), ("B".to_owned(), "2 3".to_owned())]
        );
        assert_eq!(single_env_key(r#""X=\"q\"""#).as_deref(), Some("X"));
        assert_eq!(single_env_key("A=1 B=2"), None);
        assert_eq!(single_env_key(r#""A=1" "B=2""#), None);
        assert_eq!(single_env_key(r#""A-B=1""#), None);
        assert_eq!(single_env_key("\""), None);
    }

    /// Any string, weighted towards the characters that are escaped.
    fn hostile() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("\"".to_owned()),
            Just("\\".to_owned()),
            Just("$".to_owned()),
            Just("$$".to_owned()),
            Just("%".to_owned()),
            Just("%%".to_owned()),
            Just(" ".to_owned()),
            Just("=".to_owned()),
            Just("\t".to_owned()),
            Just("\n".to_owned()),
            Just("\0".to_owned()),
            Just("\u{85}".to_owned()),
            Just("\\x41".to_owned()),
            any::<char>().prop_map(String::from),
            "[a-z]{1,4}",
        ];
        prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn unquote_exec_args_inverts_quote_exec_args(args in prop::collection::vec(hostile(), 0..6)) {
            prop_assert_eq!(unquote_exec_args(&quote_exec_args(&args)), args.clone());
            for arg in &args {
                prop_assert_eq!(unquote_exec_args(&quote_exec_arg(arg)), vec![arg.clone()]);
            }
        }

        #[test]
        fn unquote_env_inverts_quote_env(key in "[A-Za-z_][A-Za-z0-9_]{0,16}", value in hostile()) {
            let quoted = quote_env(&key, &value);
            prop_assert_eq!(unquote_env(&quoted), vec![(key.clone(), value.clone())]);
            prop_assert_eq!(single_env_key(&quoted), Some(key.clone()));
            prop_assert_eq!(quoted, format!("\"{key}={}\"", escape_env_value(&value)));
        }

        #[test]
        fn unescape_directive_inverts_escape_directive(
            key in prop_oneof![Just("ExecStartPre"), Just("ExecReload"), Just("Nice"), Just("Description")],
            value in hostile(),
        ) {
            prop_assert_eq!(unescape_directive(key, &escape_directive(key, &value)), value);
        }

        #[test]
        fn unescape_path_inverts_escape_path(value in hostile()) {
            prop_assert_eq!(unescape_path(&escape_path(&value)), value);
        }
    }
}
