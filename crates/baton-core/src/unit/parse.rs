//! Parses a unit file into sections and directives, as systemd reads its lines: `[Section]`
//! headers, `Key=value` lines (key and value trimmed), blank lines and `#`/`;` comments.
//!
//! Values come back as they stand in the file: [`super::escape`] reads them further.

use super::{MARK_SERVICE, MARK_VERSION};

/// One line of a unit file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// A blank line, or a comment (`#` or `;`).
    Blank,
    /// A section header: the name without brackets, e.g. `Service`.
    Section(&'a str),
    /// A `Key=value` line, key and value trimmed.
    Directive {
        /// The key, e.g. `ExecStart`.
        key: &'a str,
        /// The value, as written (still escaped).
        value: &'a str,
    },
    /// Anything else (a line without `=`), which systemd ignores with a warning.
    Other,
}

/// Parses one line (without its newline).
pub(crate) fn line(line: &str) -> Line<'_> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
        return Line::Blank;
    }
    if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
        return Line::Section(name);
    }
    match line.split_once('=') {
        Some((key, value)) => Line::Directive { key: key.trim(), value: value.trim() },
        None => Line::Other,
    }
}

/// A directive of a unit file with the section it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Directive<'a> {
    /// The section's name without brackets (empty before the first header).
    pub section: &'a str,
    /// The key.
    pub key: &'a str,
    /// The value, as written (still escaped).
    pub value: &'a str,
}

/// The directives of a unit file, in order; blank lines, comments and headers skipped.
pub(crate) fn directives(unit_text: &str) -> impl Iterator<Item = Directive<'_>> {
    let mut section = "";
    unit_text.lines().filter_map(move |l| match line(l) {
        Line::Section(name) => {
            section = name;
            None
        }
        Line::Directive { key, value } => Some(Directive { section, key, value }),
        Line::Blank | Line::Other => None,
    })
}

/// The values of `key` in `section`, in order.
pub(crate) fn values<'a>(unit_text: &'a str, section: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> {
    directives(unit_text).filter(move |d| d.section == section && d.key == key).map(|d| d.value)
}

/// Reads baton's marks back from a unit file: `(service, version)` when both are present in
/// `[Unit]` (the last of each wins, as in systemd).
pub(crate) fn read_marks(unit_text: &str) -> Option<(String, String)> {
    let service = values(unit_text, "Unit", MARK_SERVICE).last()?;
    let version = values(unit_text, "Unit", MARK_VERSION).last()?;
    Some((service.to_owned(), version.to_owned()))
}

/// Reads a single-valued key of `[Service]` back from a unit file (the last one wins, as in
/// systemd), e.g. `User`; None when it is not set or its last assignment is empty (which resets
/// it to systemd's default, as an instance's drop-in does first).
pub(crate) fn read_service_key(unit_text: &str, key: &str) -> Option<String> {
    values(unit_text, "Service", key).last().filter(|v| !v.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_sections_and_directives() {
        assert_eq!(line("  # comment"), Line::Blank);
        assert_eq!(line("; comment"), Line::Blank);
        assert_eq!(line(""), Line::Blank);
        assert_eq!(line("[Service]"), Line::Section("Service"));
        assert_eq!(line(" Nice = 5 "), Line::Directive { key: "Nice", value: "5" });
        assert_eq!(line("A=b=c"), Line::Directive { key: "A", value: "b=c" });
        assert_eq!(line("junk"), Line::Other);
        let text = "X=0\n[Unit]\nA=1\n\n[Service]\n# B=2\nB=3\nB=4\n";
        let all: Vec<_> = directives(text).map(|d| (d.section, d.key, d.value)).collect();
        assert_eq!(all, [("", "X", "0"), ("Unit", "A", "1"), ("Service", "B", "3"), ("Service", "B", "4")]);
        assert_eq!(values(text, "Service", "B").collect::<Vec<_>>(), ["3", "4"]);
        assert_eq!(read_service_key(text, "B").as_deref(), Some("4"));
        assert_eq!(read_service_key(text, "A"), None);
    }

    #[test]
    fn marks_are_read_only_in_unit() {
        assert_eq!(read_marks("[Unit]\nX-Baton-Version=b\nX-Baton-Service=a\n"), Some(("a".into(), "b".into())));
        assert_eq!(read_marks("[Service]\nX-Baton-Service=a\nX-Baton-Version=b\n"), None);
        assert_eq!(read_marks("[Unit]\nX-Baton-Service=a\n"), None);
    }
}
