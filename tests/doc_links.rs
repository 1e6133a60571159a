//! The documentation's links: every relative link in `README.md`, `docs/**/*.md` and
//! `export/README.md` names a file or folder of the checkout, `README.md` stays a front door (at
//! most 200 lines), and `docs/README.md` indexes every page of `docs/`.
//!
//! Links are read as GitHub renders them: inline links `[text](target)`, images
//! `![alt](target)` and reference definitions `[label]: target`; nothing inside fenced code
//! blocks or inline code spans. Web and mail addresses and anchors within the same file are not
//! checked; an `#anchor` after a path is dropped, and only the path is checked.

use std::fs;
use std::path::{Path, PathBuf};

/// The most lines `README.md` may have; the reference lives in `docs/`.
const README_MAX_LINES: usize = 200;

/// A link target as written in a markdown file, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    line: usize,
    target: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The markdown files whose links are checked, relative to `root`, in name order.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![
        PathBuf::from("README.md"),
        PathBuf::from("export/README.md"),
    ];
    let mut folders = vec![PathBuf::from("docs")];
    while let Some(folder) = folders.pop() {
        let entries = fs::read_dir(root.join(&folder))
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", folder.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", folder.display()));
            let path = folder.join(entry.file_name());
            if path_is_dir(&root.join(&path)) {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn path_is_dir(path: &Path) -> bool {
    fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false)
}

/// `line` with its inline code spans blanked out, so that code is never read as a link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].len() - rest[start..].trim_start_matches('`').len();
        let marker = &rest[start..start + ticks];
        let after = &rest[start + ticks..];
        match after.find(marker) {
            Some(end) => {
                out.push(' ');
                rest = &after[end + ticks..];
            }
            None => {
                // An unmatched backtick is literal text.
                out.push_str(marker);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The target of an inline link, from the text right after its `](`; `None` when the
/// parenthesis is never closed (then it is no link).
fn inline_target(s: &str) -> Option<&str> {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('<') {
        return rest.find('>').map(|end| &rest[..end]);
    }
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(&s[..i]),
            ')' => depth -= 1,
            // A title ("...") follows the target.
            c if c.is_whitespace() => return Some(&s[..i]),
            _ => {}
        }
    }
    None
}

/// The target of a reference definition `[label]: target` (indented by at most three spaces).
fn reference_definition(line: &str) -> Option<&str> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = line[indent..].strip_prefix('[')?;
    let close = rest.find("]:")?;
    if close == 0 || rest[..close].contains(['[', ']']) {
        return None;
    }
    let target = rest[close + 2..].split_whitespace().next()?;
    Some(
        target
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix('>'))
            .unwrap_or(target),
    )
}

/// Every link of a markdown text outside fenced code blocks, in order.
fn links(text: &str) -> Vec<Link> {
    let mut found = Vec::new();
    // The marker (``` or ~~~) of the fenced block we are in.
    let mut fence: Option<&str> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(*m));
        if let Some(m) = marker {
            match fence {
                None => fence = Some(m),
                Some(open) if open == m => fence = None,
                Some(_) => {}
            }
            continue;
        }
        if fence.is_some() {
            continue;
        }
        let line = without_code_spans(raw);
        if let Some(target) = reference_definition(&line) {
            found.push(Link {
                line: i + 1,
                target: target.to_string(),
            });
            continue;
        }
        let mut from = 0;
        while let Some(pos) = line[from..].find("](") {
            let at = from + pos;
            if line[..at].contains('[') {
                if let Some(target) = inline_target(&line[at + 2..]) {
                    found.push(Link {
                        line: i + 1,
                        target: target.to_string(),
                    });
                }
            }
            from = at + 2;
        }
    }
    found
}

/// `%XX` escapes decoded (GitHub links write spaces as `%20`).
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The local path a link target names, without its anchor; `None` for the targets this test
/// does not check (web and mail addresses, anchors within the same file).
fn local_path(target: &str) -> Option<String> {
    let t = target.trim();
    let t = t
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(t);
    if ["http://", "https://", "mailto:"]
        .iter()
        .any(|p| t.starts_with(p))
    {
        return None;
    }
    let path = t.split(['#', '?']).next().unwrap_or("");
    if path.is_empty() {
        return None;
    }
    Some(percent_decoded(path))
}

/// Where a local link path points: relative to the markdown file's folder, or to `root` when
/// it starts with `/` (as GitHub resolves it).
fn resolve(root: &Path, file: &Path, path: &str) -> PathBuf {
    match path.strip_prefix('/') {
        Some(from_root) => root.join(from_root),
        None => root.join(file.parent().unwrap_or(Path::new(""))).join(path),
    }
}

/// The number of local links of `text` (the markdown file `file`, relative to `root`) and
/// `file:line: target` for each of them that names nothing.
fn broken_links(root: &Path, file: &Path, text: &str) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut broken = Vec::new();
    for link in links(text) {
        let Some(path) = local_path(&link.target) else {
            continue;
        };
        checked += 1;
        if !resolve(root, file, &path).exists() {
            broken.push(format!("{}:{}: {}", file.display(), link.line, link.target));
        }
    }
    (checked, broken)
}

fn read(root: &Path, file: &Path) -> String {
    fs::read_to_string(root.join(file))
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
}

#[test]
fn every_relative_link_resolves() {
    let root = root();
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in markdown_files(&root) {
        let (n, b) = broken_links(&root, &file, &read(&root, &file));
        checked += n;
        broken.extend(b);
    }
    assert!(
        checked > 0,
        "no relative link found in the documentation: the extractor reads nothing"
    );
    assert!(
        broken.is_empty(),
        "{} of {checked} relative links name no file or folder (file:line: target):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn readme_is_at_most_200_lines() {
    let root = root();
    let lines = read(&root, Path::new("README.md")).lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move reference material into docs/"
    );
}

#[test]
fn docs_index_lists_every_page() {
    let root = root();
    let index = Path::new("docs/README.md");
    let listed: Vec<PathBuf> = links(&read(&root, index))
        .iter()
        .filter_map(|l| local_path(&l.target))
        .map(|p| resolve(&root, index, &p))
        .collect();
    let missing: Vec<String> = markdown_files(&root)
        .into_iter()
        .filter(|f| f.starts_with("docs") && f.as_path() != index)
        .filter(|f| !listed.contains(&root.join(f)))
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "docs/README.md does not link to: {}",
        missing.join(", ")
    );
}

/// The checker itself: on a text with known good, broken, skipped and quoted links it reports
/// exactly the broken ones, so a passing `every_relative_link_resolves` means something.
#[test]
fn the_checker_reports_broken_links() {
    const SAMPLE: &str = "\
# Sample

[the front door](README.md) and [a page](docs/no-such-page.md#intro).
![a plot](<docs/no such plot.png>) and [a folder](docs/)
[web](https://example.com/x.md), [mail](mailto:a@example.com), [here](#sample)
`[in a code span](docs/code-span.md)` and [titled](docs/no-such-titled.md \"A title\")

```sh
[in a fence](docs/fenced.md)
```

[ref]: docs/no-such-reference.md
[good ref]: <export/README.md>
";
    let root = root();
    let (checked, broken) = broken_links(&root, Path::new("sample.md"), SAMPLE);
    assert_eq!(
        broken,
        [
            "sample.md:3: docs/no-such-page.md#intro",
            "sample.md:4: docs/no such plot.png",
            "sample.md:6: docs/no-such-titled.md",
            "sample.md:12: docs/no-such-reference.md",
        ]
    );
    // README.md, docs/ and <export/README.md> resolve; the web, mail and anchor links are
    // skipped; the code span and the fence are not links.
    assert_eq!(checked, 7);

    // Relative to the file's own folder, and from the root with a leading slash.
    let (_, from_docs) = broken_links(&root, Path::new("docs/x.md"), "[up](../README.md)");
    assert!(from_docs.is_empty(), "{from_docs:?}");
    let (_, from_root) = broken_links(&root, Path::new("docs/x.md"), "[root](/README.md)");
    assert!(from_root.is_empty(), "{from_root:?}");
    let (_, wrong_folder) = broken_links(&root, Path::new("docs/x.md"), "[same](README2.md)");
    assert_eq!(wrong_folder, ["docs/x.md:1: README2.md"]);
}
