//! The names tools have in the gateway: `<server name>__<tool>`, within the
//! `^[a-zA-Z0-9_-]{1,64}$` MCP clients enforce, unique in each caller's view.
//!
//! Server names may hold `.` and run to 64 characters, tool names are the server's own,
//! and two of a caller's servers may share a name; so the plain form is used when it is
//! valid and unique, and otherwise the name is shortened and given a suffix derived from
//! the server's id and the tool's name, which cannot collide in practice and is
//! lengthened if it ever does. Calls are resolved through the caller's own view, never by
//! splitting a name.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

/// The longest tool name clients accept.
pub const MAX_TOOL_NAME: usize = 64;

/// Between the server's part and the tool's.
pub const SEPARATOR: &str = "__";

/// Whether `name` is within the rule clients enforce, `^[a-zA-Z0-9_-]{1,64}$`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_TOOL_NAME && name.bytes().all(allowed)
}

/// One tool to name.
#[derive(Debug, Clone, Copy)]
pub struct Unnamed<'a> {
    /// Its server.
    pub server_id: Uuid,
    /// Its server's name.
    pub server_name: &'a str,
    /// The tool's own name.
    pub tool: &'a str,
}

/// The gateway names of `tools`, in the same order, all different.
pub fn qualify(tools: &[Unnamed<'_>]) -> Vec<String> {
    let plain: Vec<Option<String>> = tools.iter().map(plain_name).collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for name in plain.iter().flatten() {
        *counts.entry(name.as_str()).or_default() += 1;
    }
    let mut names: Vec<String> = tools
        .iter()
        .zip(&plain)
        .map(|(tool, plain)| match plain {
            Some(name) if counts[name.as_str()] == 1 => name.clone(),
            _ => suffixed(tool, 8),
        })
        .collect();
    // A suffix collision (or a suffixed name equal to a plain one) gets a longer suffix.
    let mut digits = 8;
    while let Some(clashes) = clashing(&names) {
        digits += 4;
        for index in clashes {
            names[index] = suffixed(&tools[index], digits);
        }
        if digits >= 32 {
            break;
        }
    }
    names
}

/// `server__tool` when that is a valid client name as it stands.
fn plain_name(tool: &Unnamed<'_>) -> Option<String> {
    let name = format!("{}{SEPARATOR}{}", tool.server_name, tool.tool);
    is_valid_name(&name).then_some(name)
}

/// The name with unusable characters replaced, cut to fit, and `-<digits of a hash>`.
fn suffixed(tool: &Unnamed<'_>, digits: usize) -> String {
    let hash = Uuid::new_v5(&tool.server_id, tool.tool.as_bytes())
        .simple()
        .to_string();
    let suffix = &hash[..digits.min(hash.len())];
    let mut name: String = format!("{}{SEPARATOR}{}", tool.server_name, tool.tool)
        .chars()
        .map(|c| {
            if c.is_ascii() && allowed(c as u8) {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(MAX_TOOL_NAME - 1 - suffix.len());
    name.push('-');
    name.push_str(suffix);
    name
}

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The indexes of names that appear more than once, if any.
fn clashing(names: &[String]) -> Option<Vec<usize>> {
    let mut seen = HashSet::new();
    let repeated: HashSet<&str> = names
        .iter()
        .filter(|n| !seen.insert(n.as_str()))
        .map(String::as_str)
        .collect();
    let indexes: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| repeated.contains(n.as_str()))
        .map(|(i, _)| i)
        .collect();
    (!indexes.is_empty()).then_some(indexes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_kept_when_valid_and_unique() {
        let id = Uuid::from_u128(1);
        let names = qualify(&[
            Unnamed {
                server_id: id,
                server_name: "files",
                tool: "read",
            },
            Unnamed {
                server_id: id,
                server_name: "files",
                tool: "write",
            },
        ]);
        assert_eq!(names, ["files__read", "files__write"]);
    }

    #[test]
    fn same_named_servers_dotted_names_and_long_names_still_give_distinct_valid_names() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let long = "t".repeat(120);
        let tools = [
            Unnamed {
                server_id: a,
                server_name: "files",
                tool: "read",
            },
            Unnamed {
                server_id: b,
                server_name: "files",
                tool: "read",
            },
            Unnamed {
                server_id: a,
                server_name: "my.server",
                tool: "get/time",
            },
            Unnamed {
                server_id: a,
                server_name: "my-server",
                tool: "get-time",
            },
            Unnamed {
                server_id: a,
                server_name: "x",
                tool: &long,
            },
            Unnamed {
                server_id: b,
                server_name: "x",
                tool: &long,
            },
            Unnamed {
                server_id: a,
                server_name: "a__b",
                tool: "c",
            },
            Unnamed {
                server_id: b,
                server_name: "a",
                tool: "b__c",
            },
        ];
        let names = qualify(&tools);
        assert!(names.iter().all(|n| is_valid_name(n)), "{names:?}");
        let distinct: HashSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
        assert!(names[0].starts_with("files__read-"), "{names:?}");
        assert_eq!(names[3], "my-server__get-time");
        // The same inputs always give the same names.
        assert_eq!(qualify(&tools), names);
    }
}
