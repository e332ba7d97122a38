//! The shared state of the Exchange plane: configuration, indexes, created items, counters,
//! throttling budgets.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::{AccessRight, AppAccessKind, ConfigError, ExchangeConfig, ServerConfig};
use crate::directory::Directory;
use crate::store::{
    Attachment, Folder, FolderEdits, MAX_CUSTOM_FOLDERS, Mailbox, Message, Overlay,
    generated_is_read, generated_message,
};
use crate::token::TokenVerifier;

/// Where a request landed: Exchange Online or an on-premises server (by index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    Online,
    OnPrem(usize),
}

/// An on-premises server with resolved references.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub cfg: ServerConfig,
    pub tenant_id: String,
    /// Host of the public URL.
    pub host: String,
    /// Scheme and host of the public URL, e.g. `https://mail.contoso.com`.
    pub origin: String,
    /// Scheme and host of the Autodiscover URL.
    pub autodiscover_origin: String,
    /// Scheme and host a publishing rule forwards both to (`forwarded_as`).
    pub forwarded_origin: Option<String>,
}

/// Organisation settings of a tenant.
#[derive(Debug, Clone)]
pub(crate) struct Org {
    pub ews_enabled: bool,
    pub ews_allowed_apps: Option<Vec<String>>,
    pub app_only_requires_certificate: bool,
    pub smtp_auth_enabled: bool,
    pub imap_enabled: bool,
    pub pop_enabled: bool,
}

/// A resolved application access scope.
#[derive(Debug, Clone)]
pub(crate) struct AppScope {
    pub tenant_id: String,
    pub app_id: String,
    pub group: String,
    pub kind: AppAccessKind,
    pub access: AccessRight,
}

/// Counters reported by [`ExchangeStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub ews: AtomicU64,
    pub graph: AtomicU64,
    pub autodiscover: AtomicU64,
    pub auth_failures: AtomicU64,
    pub throttled: AtomicU64,
    pub created: AtomicU64,
    pub smtp_sessions: AtomicU64,
    pub smtp_messages: AtomicU64,
    pub imap_sessions: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Request counts and sizes of the Exchange plane.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExchangeStats {
    /// Mailboxes loaded.
    pub mailboxes: usize,
    /// On-premises servers.
    pub servers: usize,
    /// EWS requests answered (any outcome).
    pub ews_requests: u64,
    /// Graph requests answered (any outcome).
    pub graph_requests: u64,
    /// Autodiscover requests answered (any outcome).
    pub autodiscover_requests: u64,
    /// Requests rejected at authentication (401/403 before the operation).
    pub auth_failures: u64,
    /// Requests refused by throttling.
    pub throttled: u64,
    /// Items created (CreateItem, sendMail, deliveries).
    pub items_created: u64,
    /// SMTP connections accepted.
    pub smtp_sessions: u64,
    /// Messages accepted by SMTP (`250` after DATA or the last BDAT).
    pub smtp_messages: u64,
    /// IMAP connections accepted.
    pub imap_sessions: u64,
}

/// Which budget a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Plane {
    Ews,
    Graph,
}

/// Per-principal request budgets per window.
#[derive(Debug)]
pub(crate) struct Throttle {
    window: Duration,
    used: Mutex<HashMap<(Plane, String), (Instant, u64)>>,
}

impl Throttle {
    /// Takes one request from the budget; `Err(remaining)` when the budget is spent.
    pub(crate) fn take(&self, plane: Plane, principal: &str, budget: u64) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut map) = self.used.lock() else {
            return Ok(());
        };
        let entry = map
            .entry((plane, principal.to_ascii_lowercase()))
            .or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= budget {
            return Err(self.window.saturating_sub(now.duration_since(entry.0)));
        }
        entry.1 += 1;
        Ok(())
    }
}

pub(crate) struct Inner {
    pub config: ExchangeConfig,
    pub directory: Arc<dyn Directory>,
    pub verifier: TokenVerifier,
    pub mailboxes: Vec<Mailbox>,
    pub by_address: HashMap<String, u32>,
    pub by_oid: HashMap<String, u32>,
    pub servers: Vec<Server>,
    pub orgs: HashMap<String, Org>,
    pub scopes: Vec<AppScope>,
    pub overlay: Overlay,
    pub throttle: Throttle,
    pub counters: Counters,
    /// NTLM handshake state by connection.
    pub ntlm: crate::ntlm::Connections,
    /// Mailboxes with IMAP4 off (`Set-CASMailbox -ImapEnabled $false`).
    pub imap_disabled: std::collections::HashSet<u32>,
    /// Mailboxes with POP3 off (`Set-CASMailbox -PopEnabled $false`).
    pub pop_disabled: std::collections::HashSet<u32>,
    /// Graph attachment upload sessions in progress, by their token.
    pub uploads: crate::graph_upload::Sessions,
}

/// The Exchange plane's state; cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct ExchangeState {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ExchangeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeState")
            .field("mailboxes", &self.inner.mailboxes.len())
            .field("servers", &self.inner.servers.len())
            .finish()
    }
}

fn origin_of(u: &str, field: &str) -> Result<(String, String), ConfigError> {
    let url = url::Url::parse(u).map_err(|e| ConfigError::Invalid {
        field: field.to_owned(),
        message: e.to_string(),
    })?;
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let origin = match url.port() {
        Some(p) => format!("{}://{host}:{p}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    };
    Ok((host, origin))
}

impl ExchangeState {
    /// Validates the configuration against the directory and builds the state (mailbox contents
    /// are generated on demand, so this is fast even for many mailboxes).
    pub fn new(
        config: ExchangeConfig,
        directory: Arc<dyn Directory>,
        verifier: TokenVerifier,
    ) -> Result<Self, ConfigError> {
        config.validate(directory.as_ref())?;
        let tenant_id = |t: &str| {
            directory
                .tenant(t)
                .map(|t| t.id.to_ascii_lowercase())
                .unwrap_or_default()
        };
        let mut servers = Vec::new();
        for (i, s) in config.servers.iter().enumerate() {
            let (host, origin) =
                origin_of(&s.public_url, &format!("exchange.servers[{i}].public_url"))?;
            let autodiscover_origin = match &s.autodiscover_url {
                Some(a) => origin_of(a, &format!("exchange.servers[{i}].autodiscover_url"))?.1,
                None => origin.clone(),
            };
            let forwarded_origin = match &s.forwarded_as {
                Some(a) => Some(origin_of(a, &format!("exchange.servers[{i}].forwarded_as"))?.1),
                None => None,
            };
            servers.push(Server {
                forwarded_origin,
                cfg: s.clone(),
                tenant_id: tenant_id(&s.tenant),
                host,
                origin,
                autodiscover_origin,
            });
        }
        let server_index = |name: &Option<String>| {
            name.as_ref().and_then(|n| {
                servers
                    .iter()
                    .position(|s| s.cfg.name.eq_ignore_ascii_case(n))
            })
        };
        let total = config.mailboxes.len()
            + config
                .mailbox_sets
                .iter()
                .map(|s| s.count as usize)
                .sum::<usize>();
        let mut mailboxes = Vec::with_capacity(total);
        let mut by_address = HashMap::with_capacity(total * 2);
        let mut tenant_cache: HashMap<String, String> = HashMap::new();
        let mut cached_tenant = |t: &str| {
            tenant_cache
                .entry(t.to_ascii_lowercase())
                .or_insert_with(|| tenant_id(t))
                .clone()
        };
        let mut imap_disabled = std::collections::HashSet::new();
        let mut pop_disabled = std::collections::HashSet::new();
        for m in &config.mailboxes {
            if !m.imap_enabled {
                imap_disabled.insert(u32::try_from(mailboxes.len()).unwrap_or(u32::MAX));
            }
            if !m.pop_enabled {
                pop_disabled.insert(u32::try_from(mailboxes.len()).unwrap_or(u32::MAX));
            }
            let address = m.address.to_ascii_lowercase();
            let domain = address.rsplit('@').next().unwrap_or_default().to_owned();
            let local = address.split('@').next().unwrap_or_default();
            mailboxes.push(Mailbox {
                display_name: m.display_name.clone().unwrap_or_else(|| title(local)),
                tenant_id: cached_tenant(m.tenant.as_deref().unwrap_or(&domain)),
                aliases: m.aliases.iter().map(|a| a.to_ascii_lowercase()).collect(),
                provisioned: m.provisioned,
                licensed: m.licensed,
                license: m.license,
                ews_enabled: m.ews_enabled,
                smtp_auth_enabled: m.smtp_auth_enabled,
                server: server_index(&m.server),
                groups: m.groups.iter().map(|g| g.to_ascii_lowercase()).collect(),
                inbox: m.inbox_messages.unwrap_or(config.default_inbox_messages),
                sent: m.sent_messages.unwrap_or(config.default_sent_messages),
                extra_folders: m.extra_folders.unwrap_or(config.default_extra_folders),
                extra_folder_messages: m
                    .extra_folder_messages
                    .unwrap_or(config.default_extra_folder_messages),
                routing_address: m.routing_address.clone(),
                address,
            });
        }
        for s in &config.mailbox_sets {
            let tenant = cached_tenant(s.tenant.as_deref().unwrap_or(&s.domain));
            let groups: Vec<String> = s.groups.iter().map(|g| g.to_ascii_lowercase()).collect();
            let server = server_index(&s.server);
            let domain = s.domain.to_ascii_lowercase();
            for n in s.first..s.first.saturating_add(s.count) {
                if !s.imap_enabled {
                    imap_disabled.insert(u32::try_from(mailboxes.len()).unwrap_or(u32::MAX));
                }
                if !s.pop_enabled {
                    pop_disabled.insert(u32::try_from(mailboxes.len()).unwrap_or(u32::MAX));
                }
                mailboxes.push(Mailbox {
                    address: format!("{}{n}@{domain}", s.prefix.to_ascii_lowercase()),
                    display_name: format!("{} {n}", title(&s.prefix)),
                    tenant_id: tenant.clone(),
                    aliases: Vec::new(),
                    provisioned: s.provisioned,
                    licensed: s.licensed,
                    license: s.license,
                    ews_enabled: s.ews_enabled,
                    smtp_auth_enabled: s.smtp_auth_enabled,
                    server,
                    groups: groups.clone(),
                    inbox: s.inbox_messages.unwrap_or(config.default_inbox_messages),
                    sent: s.sent_messages.unwrap_or(config.default_sent_messages),
                    extra_folders: s.extra_folders.unwrap_or(config.default_extra_folders),
                    extra_folder_messages: s
                        .extra_folder_messages
                        .unwrap_or(config.default_extra_folder_messages),
                    routing_address: None,
                });
            }
        }
        let mut by_oid = HashMap::with_capacity(total);
        for (i, m) in mailboxes.iter().enumerate() {
            let i = u32::try_from(i).map_err(|_| ConfigError::Invalid {
                field: "exchange.mailbox_sets".into(),
                message: "too many mailboxes".into(),
            })?;
            for a in std::iter::once(&m.address).chain(m.aliases.iter()) {
                if by_address.insert(a.clone(), i).is_some() {
                    return Err(ConfigError::Invalid {
                        field: "exchange.mailboxes".into(),
                        message: format!(
                            "address '{a}' is used by two mailboxes (check mailbox_sets against mailboxes)"
                        ),
                    });
                }
            }
            by_oid.insert(m.object_id().to_string(), i);
        }
        let mut orgs = HashMap::new();
        for o in &config.organizations {
            orgs.insert(
                tenant_id(&o.tenant),
                Org {
                    ews_enabled: o.ews_enabled,
                    ews_allowed_apps: o
                        .ews_allowed_apps
                        .as_ref()
                        .map(|v| v.iter().map(|a| a.to_ascii_lowercase()).collect()),
                    app_only_requires_certificate: o.app_only_requires_certificate,
                    smtp_auth_enabled: o.smtp_auth_enabled,
                    imap_enabled: o.imap_enabled,
                    pop_enabled: o.pop_enabled,
                },
            );
        }
        let scopes = config
            .app_access
            .iter()
            .map(|a| AppScope {
                tenant_id: tenant_id(&a.tenant),
                app_id: a.app_id.to_ascii_lowercase(),
                group: a.group.to_ascii_lowercase(),
                kind: a.kind,
                access: a.access,
            })
            .collect();
        let window = Duration::from_secs(config.throttling.window_seconds);
        Ok(Self {
            inner: Arc::new(Inner {
                directory,
                verifier,
                mailboxes,
                by_address,
                by_oid,
                servers,
                orgs,
                scopes,
                overlay: Overlay::default(),
                uploads: crate::graph_upload::Sessions::default(),
                throttle: Throttle {
                    window,
                    used: Mutex::new(HashMap::new()),
                },
                counters: Counters::default(),
                ntlm: crate::ntlm::Connections::default(),
                imap_disabled,
                pop_disabled,
                config,
            }),
        })
    }

    /// The on-premises servers: their names (the `/onprem/{name}` prefix) and public URLs.
    pub fn servers(&self) -> Vec<(String, String)> {
        self.inner
            .servers
            .iter()
            .map(|s| (s.cfg.name.clone(), s.origin.clone()))
            .collect()
    }

    /// Request counters and sizes.
    pub fn stats(&self) -> ExchangeStats {
        let c = &self.inner.counters;
        ExchangeStats {
            mailboxes: self.inner.mailboxes.len(),
            servers: self.inner.servers.len(),
            ews_requests: c.ews.load(Ordering::Relaxed),
            graph_requests: c.graph.load(Ordering::Relaxed),
            autodiscover_requests: c.autodiscover.load(Ordering::Relaxed),
            auth_failures: c.auth_failures.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            items_created: c.created.load(Ordering::Relaxed),
            smtp_sessions: c.smtp_sessions.load(Ordering::Relaxed),
            smtp_messages: c.smtp_messages.load(Ordering::Relaxed),
            imap_sessions: c.imap_sessions.load(Ordering::Relaxed),
        }
    }

    /// Service principal names configured for on-premises servers, per server name (for the
    /// identity side, which answers AADSTS500011 for a resource that is not registered).
    pub fn onprem_spns(&self) -> Vec<(String, Vec<String>)> {
        self.inner
            .servers
            .iter()
            .map(|s| (s.cfg.name.clone(), s.cfg.spns.clone()))
            .collect()
    }
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut up = true;
    for c in s.chars() {
        if c == '.' || c == '_' || c == '-' {
            out.push(' ');
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl Inner {
    pub(crate) fn mailbox(&self, i: u32) -> Option<&Mailbox> {
        self.mailboxes.get(i as usize)
    }

    /// Mailbox by address or alias.
    pub(crate) fn find(&self, address: &str) -> Option<u32> {
        self.by_address
            .get(&address.trim().to_ascii_lowercase())
            .copied()
    }

    /// Mailbox by address, alias or object id.
    pub(crate) fn find_any(&self, id: &str) -> Option<u32> {
        self.find(id)
            .or_else(|| self.by_oid.get(&id.trim().to_ascii_lowercase()).copied())
    }

    pub(crate) fn generated_count(&self, m: &Mailbox, folder: Folder) -> u32 {
        match folder {
            Folder::Inbox => m.inbox,
            Folder::SentItems => m.sent,
            Folder::Custom(k) if k < m.extra_folders => m.extra_folder_messages,
            _ => 0,
        }
    }

    /// Whether the mailbox has this folder.
    pub(crate) fn folder_exists(&self, i: u32, folder: Folder) -> bool {
        match (self.mailbox(i), folder) {
            (Some(m), Folder::Custom(k)) => self
                .overlay
                .read_folders(i, |e| custom_folder(m, e, k).is_some()),
            (Some(_), _) => true,
            (None, _) => false,
        }
    }

    /// Every folder of a mailbox: the well-known ones, then the generated and created ones
    /// present, by number.
    pub(crate) fn folders(&self, i: u32) -> Vec<Folder> {
        let Some(m) = self.mailbox(i) else {
            return Vec::new();
        };
        let customs = self.overlay.read_folders(i, |e| custom_folders(m, e));
        let mut v = Folder::WELL_KNOWN.to_vec();
        v.extend(customs.into_iter().map(|(k, ..)| Folder::Custom(k)));
        v
    }

    /// Every folder of a mailbox with its display name and parent, from one look at the tree.
    pub(crate) fn folder_entries(&self, i: u32) -> Vec<(Folder, String, Option<Folder>)> {
        let Some(m) = self.mailbox(i) else {
            return Vec::new();
        };
        let customs = self.overlay.read_folders(i, |e| custom_folders(m, e));
        let mut v: Vec<(Folder, String, Option<Folder>)> = Folder::WELL_KNOWN
            .iter()
            .map(|f| (*f, f.display_name().into_owned(), f.parent()))
            .collect();
        v.extend(
            customs
                .into_iter()
                .map(|(k, n, p)| (Folder::Custom(k), n, Some(p))),
        );
        v
    }

    /// A folder's display name (a generated or created folder's as it now is).
    pub(crate) fn folder_name(&self, i: u32, f: Folder) -> String {
        match (f, self.mailbox(i)) {
            (Folder::Custom(k), Some(m)) => self
                .overlay
                .read_folders(i, |e| custom_folder(m, e, k))
                .map_or_else(|| f.display_name().into_owned(), |(n, _)| n),
            _ => f.display_name().into_owned(),
        }
    }

    /// A folder's parent (a generated or created folder's as it now is).
    pub(crate) fn folder_parent(&self, i: u32, f: Folder) -> Option<Folder> {
        match (f, self.mailbox(i)) {
            (Folder::Custom(k), Some(m)) => self
                .overlay
                .read_folders(i, |e| custom_folder(m, e, k))
                .map(|(_, p)| p),
            _ => f.parent(),
        }
    }

    /// A folder's child folders.
    pub(crate) fn folder_children(&self, i: u32, f: Folder) -> Vec<Folder> {
        let Some(m) = self.mailbox(i) else {
            return Vec::new();
        };
        let customs = self.overlay.read_folders(i, |e| custom_folders(m, e));
        let mut v: Vec<Folder> = Folder::WELL_KNOWN
            .iter()
            .copied()
            .filter(|c| c.parent() == Some(f))
            .collect();
        v.extend(
            customs
                .into_iter()
                .filter(|(_, _, p)| *p == f)
                .map(|(k, ..)| Folder::Custom(k)),
        );
        v
    }

    /// Creates folder `name` under `parent` (IMAP CREATE, EWS CreateFolder, Graph
    /// `childFolders`).
    pub(crate) fn create_folder(
        &self,
        i: u32,
        parent: Folder,
        name: &str,
    ) -> Result<Folder, FolderChange> {
        let m = self.mailbox(i).ok_or(FolderChange::NotFound)?;
        let name = valid_folder_name(name)?;
        self.overlay
            .edit_folders(i, |e| {
                if !parent_exists(m, e, parent) {
                    return Err(FolderChange::ParentNotFound);
                }
                if name_taken(m, e, parent, &name, None) {
                    return Err(FolderChange::Exists);
                }
                let k = e.next.unwrap_or(m.extra_folders);
                if k >= MAX_CUSTOM_FOLDERS {
                    return Err(FolderChange::Full);
                }
                e.meta.insert(k, (name, parent));
                e.next = Some(k + 1);
                Ok(Folder::Custom(k))
            })
            .unwrap_or(Err(FolderChange::NotFound))
    }

    /// Renames and/or moves a generated or created folder (IMAP RENAME, EWS UpdateFolder and
    /// MoveFolder, Graph `PATCH`/`move`). Well-known folders keep their names.
    pub(crate) fn rename_folder(
        &self,
        i: u32,
        f: Folder,
        parent: Folder,
        name: &str,
    ) -> Result<(), FolderChange> {
        let m = self.mailbox(i).ok_or(FolderChange::NotFound)?;
        let k = changeable(f)?;
        let name = valid_folder_name(name)?;
        self.overlay
            .edit_folders(i, |e| {
                if custom_folder(m, e, k).is_none() {
                    return Err(FolderChange::NotFound);
                }
                if !parent_exists(m, e, parent) || is_within(m, e, parent, f) {
                    return Err(FolderChange::ParentNotFound);
                }
                if name_taken(m, e, parent, &name, Some(k)) {
                    return Err(FolderChange::Exists);
                }
                e.meta.insert(k, (name, parent));
                Ok(())
            })
            .unwrap_or(Err(FolderChange::NotFound))
    }

    /// Deletes a generated or created folder with every folder under it (their items go with
    /// them). Well-known folders cannot be deleted.
    pub(crate) fn delete_folder(&self, i: u32, f: Folder) -> Result<(), FolderChange> {
        let m = self.mailbox(i).ok_or(FolderChange::NotFound)?;
        let k = changeable(f)?;
        self.overlay
            .edit_folders(i, |e| {
                if custom_folder(m, e, k).is_none() {
                    return Err(FolderChange::NotFound);
                }
                let doomed: Vec<u8> = custom_folders(m, e)
                    .into_iter()
                    .filter(|(c, ..)| is_within(m, e, Folder::Custom(*c), f))
                    .map(|(c, ..)| c)
                    .collect();
                for c in doomed {
                    e.deleted.insert(c);
                    e.meta.remove(&c);
                }
                Ok(())
            })
            .unwrap_or(Err(FolderChange::NotFound))
    }

    /// Whether an IMAP client is subscribed to the folder (every folder starts subscribed).
    pub(crate) fn subscribed(&self, i: u32, f: Folder) -> bool {
        !self
            .overlay
            .read_folders(i, |e| e.unsubscribed.contains(&f.code()))
    }

    /// IMAP SUBSCRIBE / UNSUBSCRIBE.
    pub(crate) fn set_subscribed(&self, i: u32, f: Folder, on: bool) {
        self.overlay.edit_folders(i, |e| {
            if on {
                e.unsubscribed.remove(&f.code());
            } else {
                e.unsubscribed.insert(f.code());
            }
        });
    }

    /// Positions used in a folder: generated plus created items, deleted ones included. Ids,
    /// sync states and delta tokens count positions.
    pub(crate) fn slots(&self, i: u32, folder: Folder) -> u32 {
        let Some(m) = self.mailbox(i) else { return 0 };
        if matches!(folder, Folder::Custom(_)) && !self.folder_exists(i, folder) {
            return 0;
        }
        self.generated_count(m, folder)
            .saturating_add(self.overlay.count(i, folder))
    }

    /// Items present in a folder (deleted ones excluded).
    pub(crate) fn count(&self, i: u32, folder: Folder) -> u32 {
        let gone = self.overlay.deleted_count(i, folder);
        self.slots(i, folder).saturating_sub(gone)
    }

    pub(crate) fn unread(&self, i: u32, folder: Folder) -> u32 {
        let Some(m) = self.mailbox(i) else { return 0 };
        let gone = self.overlay.deleted_in(i, folder);
        let g = self.generated_count(m, folder);
        let read = |n: u32, default: bool| self.overlay.read_state(i, folder, n).unwrap_or(default);
        let generated = (0..g)
            .filter(|n| {
                !read(*n, generated_is_read(m, folder, *n)) && gone.binary_search(n).is_err()
            })
            .count() as u32;
        let created = (0..self.overlay.count(i, folder))
            .filter(|k| gone.binary_search(&g.saturating_add(*k)).is_err())
            .filter_map(|k| {
                self.overlay
                    .get(i, folder, k)
                    .map(|msg| read(g.saturating_add(k), msg.is_read))
            })
            .filter(|is_read| !is_read)
            .count() as u32;
        generated + created
    }

    /// Message at position `n` (creation order) of a folder; `None` when deleted.
    pub(crate) fn message(&self, i: u32, folder: Folder, n: u32) -> Option<Message> {
        let m = self.mailbox(i)?;
        if self.overlay.is_deleted(i, folder, n) {
            return None;
        }
        // The items of a deleted folder went with it, whatever id names them.
        if matches!(folder, Folder::Custom(_)) && !self.folder_exists(i, folder) {
            return None;
        }
        let g = self.generated_count(m, folder);
        let mut msg = if n < g {
            Some(generated_message(i, m, folder, n))
        } else {
            self.overlay.get(i, folder, n - g)
        }?;
        if let Some(read) = self.overlay.read_state(i, folder, n) {
            msg.is_read = read;
        }
        msg.attachments = self.overlay.attachments(i, folder, n);
        Some(msg)
    }

    /// Adds a file attachment to the item at position `n` (its number is assigned here);
    /// returns the item as it now is and the attachment.
    pub(crate) fn add_attachment(
        &self,
        i: u32,
        folder: Folder,
        n: u32,
        mut att: Attachment,
    ) -> Option<(Message, Attachment)> {
        self.message(i, folder, n)?;
        let added = self.overlay.edit_attachments(i, folder, n, |e| {
            att.seq = e.next;
            e.next = e.next.saturating_add(1);
            e.list.push(att.clone());
            att
        })?;
        Some((self.message(i, folder, n)?, added))
    }

    /// Removes attachment `seq` of the item at position `n`; `false` when there is none.
    pub(crate) fn delete_attachment(&self, i: u32, folder: Folder, n: u32, seq: u32) -> bool {
        self.message(i, folder, n).is_some()
            && self
                .overlay
                .edit_attachments(i, folder, n, |e| {
                    let before = e.list.len();
                    e.list.retain(|a| a.seq != seq);
                    e.list.len() != before
                })
                .unwrap_or(false)
    }

    /// Position of the `k`-th present item (0 = oldest) of a folder, skipping deleted ones.
    pub(crate) fn position(&self, i: u32, folder: Folder, k: u32) -> u32 {
        let mut pos = k;
        for d in self.overlay.deleted_in(i, folder) {
            if d <= pos {
                pos = pos.saturating_add(1);
            } else {
                break;
            }
        }
        pos
    }

    /// Deletes the item at position `n`; returns it, or `None` when there is no such item.
    pub(crate) fn delete(&self, i: u32, folder: Folder, n: u32) -> Option<Message> {
        let msg = self.message(i, folder, n)?;
        self.overlay.delete(i, folder, n).then_some(msg)
    }

    /// Stores a new message in a folder.
    pub(crate) fn store(&self, msg: Message) -> Option<Message> {
        let m = self.mailbox(msg.mailbox)?;
        let base = self.generated_count(m, msg.folder);
        let stored = self.overlay.push(base, msg)?;
        Counters::bump(&self.counters.created);
        Some(stored)
    }

    pub(crate) fn site_of(&self, m: &Mailbox) -> Site {
        match m.server {
            Some(s) => Site::OnPrem(s),
            None => Site::Online,
        }
    }

    pub(crate) fn budget(&self, plane: Plane, principal: &str) -> u64 {
        let t = &self.config.throttling;
        let o = t
            .overrides
            .iter()
            .find(|o| o.principal.eq_ignore_ascii_case(principal));
        match plane {
            Plane::Ews => o.and_then(|o| o.ews_budget).unwrap_or(t.ews_budget),
            Plane::Graph => o.and_then(|o| o.graph_budget).unwrap_or(t.graph_budget),
        }
    }

    /// Whether app scoping lets `app_id` reach mailbox `m`; `Err(kind)` names the mechanism that
    /// blocked it.
    pub(crate) fn app_may_reach(&self, app_id: &str, m: &Mailbox) -> Result<(), AppAccessKind> {
        for s in self
            .scopes
            .iter()
            .filter(|s| s.app_id == app_id && s.tenant_id == m.tenant_id)
        {
            let inside = m.in_group(&s.group);
            let blocked = match s.access {
                AccessRight::Restrict => !inside,
                AccessRight::Deny => inside,
            };
            if blocked {
                return Err(s.kind);
            }
        }
        Ok(())
    }

    /// Whether service account `upn` holds the impersonation right over mailbox `m`.
    pub(crate) fn may_impersonate(&self, upn: &str, m: &Mailbox) -> bool {
        let upn_domain = upn.rsplit('@').next().unwrap_or_default();
        let same_tenant = self
            .directory
            .tenant(upn_domain)
            .is_some_and(|t| t.id.eq_ignore_ascii_case(&m.tenant_id));
        same_tenant
            && self.config.impersonation.iter().any(|r| {
                r.account.eq_ignore_ascii_case(upn)
                    && r.group.as_ref().is_none_or(|g| m.in_group(g))
            })
    }

    pub(crate) fn org(&self, tenant_id: &str) -> Org {
        self.orgs.get(tenant_id).cloned().unwrap_or(Org {
            ews_enabled: true,
            ews_allowed_apps: None,
            app_only_requires_certificate: false,
            smtp_auth_enabled: true,
            imap_enabled: true,
            pop_enabled: true,
        })
    }
}

/// Why a folder could not be created, renamed, moved or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FolderChange {
    /// No such folder.
    NotFound,
    /// The parent does not exist, or is the folder itself or under it.
    ParentNotFound,
    /// A sibling already has the name.
    Exists,
    /// A well-known folder (Inbox, Sent Items, ...) keeps its name and place.
    WellKnown,
    /// The mailbox has no room for another folder.
    Full,
    /// An empty name, or one over 255 characters.
    InvalidName,
}

/// The number of a folder that can be renamed, moved or deleted (a generated or created one).
fn changeable(f: Folder) -> Result<u8, FolderChange> {
    match f {
        Folder::Custom(k) => Ok(k),
        f if Folder::WELL_KNOWN.contains(&f) => Err(FolderChange::WellKnown),
        _ => Err(FolderChange::NotFound),
    }
}

fn valid_folder_name(name: &str) -> Result<String, FolderChange> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 255 || name.chars().any(char::is_control) {
        return Err(FolderChange::InvalidName);
    }
    Ok(name.to_owned())
}

/// A custom folder's name and parent, `None` when it does not exist (deleted, or a number never
/// given out).
fn custom_folder(m: &Mailbox, e: &FolderEdits, k: u8) -> Option<(String, Folder)> {
    if e.deleted.contains(&k) {
        return None;
    }
    if let Some((name, parent)) = e.meta.get(&k) {
        return Some((name.clone(), *parent));
    }
    (k < m.extra_folders).then(|| (Folder::Custom(k).display_name().into_owned(), Folder::Inbox))
}

/// The custom folders present: number, name, parent.
fn custom_folders(m: &Mailbox, e: &FolderEdits) -> Vec<(u8, String, Folder)> {
    let end = e.next.unwrap_or(m.extra_folders).max(m.extra_folders);
    (0..end)
        .filter_map(|k| custom_folder(m, e, k).map(|(n, p)| (k, n, p)))
        .collect()
}

fn parent_exists(m: &Mailbox, e: &FolderEdits, parent: Folder) -> bool {
    match parent {
        Folder::Custom(k) => custom_folder(m, e, k).is_some(),
        f => Folder::WELL_KNOWN.contains(&f),
    }
}

/// Whether `f` is `top` or lies under it.
fn is_within(m: &Mailbox, e: &FolderEdits, f: Folder, top: Folder) -> bool {
    let mut cur = Some(f);
    // The tree is at most as deep as the folders are many.
    for _ in 0..=usize::from(MAX_CUSTOM_FOLDERS) + Folder::WELL_KNOWN.len() {
        match cur {
            None => return false,
            Some(c) if c == top => return true,
            Some(Folder::Custom(k)) => cur = custom_folder(m, e, k).map(|(_, p)| p),
            Some(c) => cur = c.parent(),
        }
    }
    false
}

/// Whether a child of `parent` other than custom folder `except` is named `name` (without
/// regard to case, as Exchange compares folder names).
fn name_taken(
    m: &Mailbox,
    e: &FolderEdits,
    parent: Folder,
    name: &str,
    except: Option<u8>,
) -> bool {
    let well_known = Folder::WELL_KNOWN
        .iter()
        .any(|w| w.parent() == Some(parent) && w.display_name().eq_ignore_ascii_case(name));
    well_known
        || custom_folders(m, e)
            .iter()
            .any(|(k, n, p)| *p == parent && Some(*k) != except && n.eq_ignore_ascii_case(name))
}
