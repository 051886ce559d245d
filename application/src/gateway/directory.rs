//! What the gateway can offer: the servers that run and answer, with the tools they last
//! reported, kept current from the event log (see the feed follower that feeds it), and
//! each caller's view of them.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use berth_domain::catalog::Transport;
use berth_domain::server::{Sharing, Tool};
use tokio::sync::watch;
use uuid::Uuid;

use super::names::{qualify, Unnamed};
use crate::access::Caller;
use crate::redaction::Redactor;

/// How long a call may take when the entry says nothing.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One server the gateway can reach.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The server.
    pub server_id: Uuid,
    /// Its owner (`user:NAME`).
    pub owner: String,
    /// Its name.
    pub name: String,
    /// How it speaks MCP.
    pub transport: Transport,
    /// Its tools as last recorded.
    pub tools: Vec<Tool>,
    /// How long one call may take.
    pub call_timeout: Duration,
    /// Who besides its owner may use it.
    pub sharing: Sharing,
    /// Whether calls keep their arguments (sealed under the caller's data key).
    pub keep_arguments: bool,
    /// What takes the server's secrets out of what it answers: a server may print its
    /// own credentials, and its answers go to everyone it is shared with.
    pub redactor: Arc<Redactor>,
}

/// Listings are compared to tell whether sessions must be told their lists changed; the
/// redactor is left out: a configuration change reaches the server at its next start,
/// and until then the redactor of the secrets it runs with is the one kept.
impl PartialEq for Listing {
    fn eq(&self, other: &Self) -> bool {
        self.server_id == other.server_id
            && self.owner == other.owner
            && self.name == other.name
            && self.transport == other.transport
            && self.tools == other.tools
            && self.call_timeout == other.call_timeout
            && self.sharing == other.sharing
            && self.keep_arguments == other.keep_arguments
    }
}

impl Listing {
    /// Whether `caller` may use it: it is theirs, or shared with them. Administrators
    /// are no exception: the gateway offers what a person uses, not all it could manage.
    pub fn usable_by(&self, caller: &Caller) -> bool {
        self.owner.strip_prefix("user:") == Some(caller.name.as_str())
            || self.sharing.includes(caller.user_id)
    }
}

/// One tool as a caller sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct VisibleTool {
    /// Its name in the gateway.
    pub name: String,
    /// Its server.
    pub listing: Arc<Listing>,
    /// The tool as its server describes it.
    pub tool: Tool,
}

/// A caller's tools, by gateway name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    tools: Vec<VisibleTool>,
}

impl View {
    /// Every tool, ordered by name.
    pub fn tools(&self) -> &[VisibleTool] {
        &self.tools
    }

    /// The same view less the tools of the servers `hidden` picks (their names stay
    /// what they were, so a name never changes meaning when a server is hidden).
    pub fn without(mut self, hidden: impl Fn(Uuid) -> bool) -> Self {
        self.tools.retain(|t| !hidden(t.listing.server_id));
        self
    }

    /// At most `size` tools named after `cursor` (from the first without one), and the
    /// cursor of the next page when there is one. A cursor is the last name of a page:
    /// names are unique and ordered, so a list that changes between two pages neither
    /// repeats a tool nor skips one that was there all along.
    pub fn page_after(&self, cursor: Option<&str>, size: usize) -> (&[VisibleTool], Option<&str>) {
        let start = cursor.map_or(0, |after| {
            self.tools.partition_point(|t| t.name.as_str() <= after)
        });
        let end = start.saturating_add(size).min(self.tools.len());
        let page = &self.tools[start..end];
        let next = (end < self.tools.len())
            .then(|| page.last().map(|t| t.name.as_str()))
            .flatten();
        (page, next)
    }

    /// The tool called `name`.
    pub fn find(&self, name: &str) -> Option<&VisibleTool> {
        self.tools
            .binary_search_by(|t| t.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.tools[i])
    }
}

/// Which of the servers a caller may use a view shows.
pub trait Selection {
    /// Whether `listing` belongs in the view.
    fn includes_server(&self, listing: &Listing) -> bool;
    /// Whether its tool `tool` does.
    fn includes_tool(&self, listing: &Listing, tool: &str) -> bool;
}

/// The servers that can be reached now. Every change bumps a counter that sessions
/// watch to tell their clients the list changed.
#[derive(Debug)]
pub struct Directory {
    listings: RwLock<BTreeMap<Uuid, Arc<Listing>>>,
    changes: watch::Sender<u64>,
}

impl Default for Directory {
    fn default() -> Self {
        Self {
            listings: RwLock::new(BTreeMap::new()),
            changes: watch::Sender::new(0),
        }
    }
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts the server in (`Some`) or takes it out (`None`); a change is announced
    /// only when something changed.
    pub fn set(&self, server_id: Uuid, listing: Option<Listing>) {
        let changed = {
            let mut listings = self.write();
            match listing {
                Some(mut listing) => {
                    let previous = listings.get(&server_id);
                    let same = previous.is_some_and(|l| **l == listing);
                    if !same {
                        if let Some(previous) = previous {
                            listing.redactor = still_running(previous, &listing);
                        }
                        listings.insert(server_id, Arc::new(listing));
                    }
                    !same
                }
                None => listings.remove(&server_id).is_some(),
            }
        };
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// Replaces every listing at once (a fresh start, or after missing events).
    pub fn replace_all(&self, all: Vec<Listing>) {
        let changed = {
            let mut listings = self.write();
            let fresh: BTreeMap<Uuid, Arc<Listing>> = all
                .into_iter()
                .map(|mut l| {
                    if let Some(previous) = listings.get(&l.server_id) {
                        l.redactor = still_running(previous, &l);
                    }
                    (l.server_id, Arc::new(l))
                })
                .collect();
            let changed = *listings != fresh;
            *listings = fresh;
            changed
        };
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// Announces a change that is not in the listings (a server's circuit opened or
    /// closed), so sessions look at their views again.
    pub fn touch(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// The servers `caller` may use that `selection` includes.
    pub fn servers(&self, caller: &Caller, selection: &dyn Selection) -> Vec<Arc<Listing>> {
        self.read()
            .values()
            .filter(|l| l.usable_by(caller) && selection.includes_server(l))
            .cloned()
            .collect()
    }

    /// A receiver that sees every change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether `server_id` is in it.
    pub fn has(&self, server_id: Uuid) -> bool {
        self.read().contains_key(&server_id)
    }

    /// The servers in it.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// The tools of the servers `caller` may use that `selection` includes, named for
    /// the gateway.
    pub fn view(&self, caller: &Caller, selection: &dyn Selection) -> View {
        let listings = self.servers(caller, selection);
        let mut picked: Vec<(Arc<Listing>, Tool)> = Vec::new();
        for listing in &listings {
            for tool in &listing.tools {
                if selection.includes_tool(listing, &tool.name) {
                    picked.push((Arc::clone(listing), tool.clone()));
                }
            }
        }
        let tools = named(picked, |tool| &tool.name)
            .into_iter()
            .map(|(name, listing, tool)| VisibleTool {
                name,
                listing,
                tool,
            })
            .collect();
        View { tools }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Uuid, Arc<Listing>>> {
        self.listings.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Uuid, Arc<Listing>>> {
        self.listings.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The redactor of a server listed again while it runs: its secrets now, and those it was
/// listed with before. A secret changed since it started reaches it only at its next
/// start, and until then it may still say the old one. A server that stops leaves the
/// directory, so its next run starts from its secrets then.
fn still_running(previous: &Listing, now: &Listing) -> Arc<Redactor> {
    Arc::new(previous.redactor.union(&now.redactor))
}

/// `items` (tools, prompts) of their servers, each with its gateway name
/// ([`qualify`]), ordered by that name.
pub fn named<T>(
    items: Vec<(Arc<Listing>, T)>,
    own_name: impl Fn(&T) -> &str,
) -> Vec<(String, Arc<Listing>, T)> {
    let unnamed: Vec<Unnamed<'_>> = items
        .iter()
        .map(|(listing, item)| Unnamed {
            server_id: listing.server_id,
            server_name: &listing.name,
            tool: own_name(item),
        })
        .collect();
    let names = qualify(&unnamed);
    let mut all: Vec<(String, Arc<Listing>, T)> = names
        .into_iter()
        .zip(items)
        .map(|(name, (listing, item))| (name, listing, item))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// Every server and tool the caller may use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Everything;

impl Selection for Everything {
    fn includes_server(&self, _: &Listing) -> bool {
        true
    }
    fn includes_tool(&self, _: &Listing, _: &str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Actor;
    use berth_domain::user::Role;

    fn listing(id: u128, owner: &str, name: &str, tools: &[&str]) -> Listing {
        Listing {
            server_id: Uuid::from_u128(id),
            owner: owner.into(),
            name: name.into(),
            transport: Transport::Stdio,
            tools: tools
                .iter()
                .map(|t| Tool {
                    name: (*t).into(),
                    description: None,
                    input_schema: None,
                })
                .collect(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            sharing: Sharing::default(),
            keep_arguments: false,
            redactor: Arc::default(),
        }
    }

    fn user(id: u128, name: &str, role: Role) -> Caller {
        Caller {
            actor: Actor::User(name.into()),
            user_id: Uuid::from_u128(id),
            name: name.into(),
            role,
        }
    }

    #[test]
    fn a_caller_sees_only_their_own_servers_tools() {
        let directory = Directory::new();
        directory.set(
            Uuid::from_u128(1),
            Some(listing(1, "user:ann", "files", &["read"])),
        );
        directory.set(
            Uuid::from_u128(2),
            Some(listing(2, "user:bob", "files", &["read", "write"])),
        );
        let ann = directory.view(&user(10, "ann", Role::Operator), &Everything);
        let names: Vec<&str> = ann.tools().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["files__read"]);
        assert_eq!(
            ann.find("files__read").unwrap().listing.server_id,
            Uuid::from_u128(1)
        );
        assert!(ann.find("files__write").is_none());
        assert!(directory
            .view(&user(12, "eve", Role::Operator), &Everything)
            .tools()
            .is_empty());
        // Administrators manage every server, but use only their own through the gateway.
        assert!(directory
            .view(&user(13, "root", Role::Admin), &Everything)
            .tools()
            .is_empty());
    }

    #[test]
    fn a_shared_server_is_usable_by_those_it_is_shared_with_only() {
        let directory = Directory::new();
        let mut shared = listing(1, "user:root", "search", &["query"]);
        shared.sharing.users.insert(Uuid::from_u128(10));
        directory.set(Uuid::from_u128(1), Some(shared));
        directory.set(
            Uuid::from_u128(2),
            Some(listing(2, "user:ann", "search", &["query"])),
        );
        let ann = directory.view(&user(10, "ann", Role::Viewer), &Everything);
        let servers: Vec<Uuid> = ann.tools().iter().map(|t| t.listing.server_id).collect();
        assert_eq!(servers.len(), 2, "{ann:?}");
        assert!(servers.contains(&Uuid::from_u128(1)));
        assert_ne!(ann.tools()[0].name, ann.tools()[1].name);
        let bob = directory.view(&user(11, "bob", Role::Operator), &Everything);
        assert!(bob.tools().is_empty());
        let mut everyone = listing(3, "user:root", "clock", &["now"]);
        everyone.sharing.everyone = true;
        directory.set(Uuid::from_u128(3), Some(everyone));
        let bob = directory.view(&user(11, "bob", Role::Viewer), &Everything);
        assert_eq!(bob.tools().len(), 1);
        assert_eq!(bob.tools()[0].name, "clock__now");
    }

    #[test]
    fn pages_follow_names_so_a_list_changing_between_pages_skips_nothing() {
        let directory = Directory::new();
        let ann = user(10, "ann", Role::Operator);
        directory.set(
            Uuid::from_u128(1),
            Some(listing(1, "user:ann", "a", &["1", "2", "3"])),
        );
        directory.set(
            Uuid::from_u128(2),
            Some(listing(2, "user:ann", "b", &["1", "2"])),
        );
        let names =
            |page: &[VisibleTool]| -> Vec<String> { page.iter().map(|t| t.name.clone()).collect() };
        let view = directory.view(&ann, &Everything);
        let (first, next) = view.page_after(None, 2);
        assert_eq!(names(first), ["a__1", "a__2"]);
        let next = next.expect("a second page").to_owned();
        // Server `a` stops between the pages: the rest of the list is still all there.
        directory.set(Uuid::from_u128(1), None);
        let view = directory.view(&ann, &Everything);
        let (second, after) = view.page_after(Some(&next), 2);
        assert_eq!(names(second), ["b__1", "b__2"]);
        assert_eq!(after, None);
        assert!(view.page_after(Some("zzz"), 2).0.is_empty());
    }

    #[test]
    fn a_running_server_listed_again_is_still_redacted_of_the_secrets_it_started_with() {
        let redactor = |secret: &str| Arc::new(Redactor::new(&[secret.into()]));
        let directory = Directory::new();
        let mut first = listing(1, "user:ann", "api", &["get"]);
        first.redactor = redactor("old-token-1234");
        directory.set(Uuid::from_u128(1), Some(first));
        // Its secret changed while it runs, and then its tools did.
        let mut again = listing(1, "user:ann", "api", &["get", "put"]);
        again.redactor = redactor("new-token-5678");
        directory.set(Uuid::from_u128(1), Some(again.clone()));
        let ann = user(10, "ann", Role::Operator);
        let now = &directory.servers(&ann, &Everything)[0];
        assert_eq!(
            now.redactor.redact("old-token-1234 new-token-5678"),
            "[redacted] [redacted]"
        );
        directory.replace_all(vec![again.clone()]);
        let now = &directory.servers(&ann, &Everything)[0];
        assert_eq!(now.redactor.redact("old-token-1234"), "[redacted]");
        // Stopped and started again: only the secrets it starts with.
        directory.set(Uuid::from_u128(1), None);
        directory.set(Uuid::from_u128(1), Some(again));
        let now = &directory.servers(&ann, &Everything)[0];
        assert_eq!(now.redactor.redact("old-token-1234"), "old-token-1234");
    }

    #[test]
    fn only_real_changes_are_announced() {
        let directory = Directory::new();
        let changes = directory.changes();
        directory.set(
            Uuid::from_u128(1),
            Some(listing(1, "user:ann", "files", &["read"])),
        );
        assert_eq!(*changes.borrow(), 1);
        directory.set(
            Uuid::from_u128(1),
            Some(listing(1, "user:ann", "files", &["read"])),
        );
        assert_eq!(*changes.borrow(), 1);
        directory.set(Uuid::from_u128(2), None);
        assert_eq!(*changes.borrow(), 1);
        directory.set(Uuid::from_u128(1), None);
        assert_eq!(*changes.borrow(), 2);
        directory.replace_all(Vec::new());
        assert_eq!(*changes.borrow(), 2);
    }
}
