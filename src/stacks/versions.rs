//! The version of every package the suite can measure, found by build.rs
//! in Cargo.lock, python/requirements.txt and node/package.json. A stack names its package and
//! reads its version here; a package missing from both files stops the
//! build rather than showing "unknown" in results.

include!(concat!(env!("OUT_DIR"), "/versions.rs"));

/// The version of a Rust crate in Cargo.lock; a compile error when it is
/// not locked.
pub const fn of_crate(package: &str) -> &'static str {
    match lookup(CRATES, package) {
        Some(v) => v,
        None => panic!("a stack names a crate that is not in Cargo.lock"),
    }
}

/// The version of a Python package pinned in python/requirements.txt; a
/// compile error when it is not pinned.
pub const fn of_python(package: &str) -> &'static str {
    match lookup(PYTHON, package) {
        Some(v) => v,
        None => panic!("a stack names a Python package not pinned in python/requirements.txt"),
    }
}

/// The version of an npm package pinned in node/package.json; a compile
/// error when it is not pinned.
pub const fn of_node(package: &str) -> &'static str {
    match lookup(NODE, package) {
        Some(v) => v,
        None => panic!("a stack names an npm package not pinned in node/package.json"),
    }
}

/// `table`'s version of `package`. A loop rather than an iterator so that
/// stacks can call it in their `const` rows.
pub const fn lookup(
    table: &'static [(&'static str, &'static str)],
    package: &str,
) -> Option<&'static str> {
    let mut i = 0;
    while i < table.len() {
        if str_eq(table[i].0, package) {
            return Some(table[i].1);
        }
        i += 1;
    }
    None
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}
