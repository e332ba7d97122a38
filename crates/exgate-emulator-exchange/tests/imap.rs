//! IMAP4: a raw TLS client against `serve_imap` through the dialogue, authentication with
//! tokens and passwords, the IMAP switches, and counts that agree with Graph.

mod common;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use exgate_emulator_exchange::{ImapOptions, serve_imap};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const IMAP_SCENARIO: &str = r#"
default_inbox_messages = 7
default_sent_messages = 2

[[organizations]]
tenant = "litware.com"
imap_enabled = false

[[mailboxes]]
address = "adele@contoso.com"
display_name = "Adele Vance"
groups = ["sales"]
extra_folders = 2

[[mailboxes]]
address = "bob@contoso.com"
display_name = "Bob Kelly"

[[mailboxes]]
address = "noimap@contoso.com"
imap_enabled = false

[[mailboxes]]
address = "mfa@contoso.com"

[[mailboxes]]
address = "fred@fabrikam.com"

[[mailboxes]]
address = "lena@litware.com"

[[app_access]]
tenant = "contoso.com"
app_id = "bbbbbbbb-cccc-dddd-eeee-ffffffffffff"
group = "sales"
"#;

type Server = LineServer;

async fn server_with(options: ImapOptions) -> Server {
    line_server(IMAP_SCENARIO, |state, listener, config, stop| {
        serve_imap(state, listener, config, options, stop)
    })
    .await
}

async fn server() -> Server {
    server_with(ImapOptions::default()).await
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

struct Client {
    io: BufReader<Tls>,
}

impl Client {
    async fn connect(s: &Server) -> (Client, String) {
        let stream = TcpStream::connect(s.addr).await.expect("connect");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(s.ca.clone()).expect("root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = connector
            .connect(name, stream)
            .await
            .expect("TLS handshake");
        let mut c = Client {
            io: BufReader::new(tls),
        };
        let greeting = c.line().await;
        (c, greeting)
    }

    async fn send(&mut self, line: &str) {
        self.io
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write");
        self.io.get_mut().flush().await.expect("flush");
    }

    async fn line(&mut self) -> String {
        let mut l = String::new();
        let n = self.io.read_line(&mut l).await.expect("read");
        assert!(n > 0, "connection closed");
        l
    }

    /// Reads up to and including the line tagged `tag` (or a `+` continuation).
    async fn until(&mut self, tag: &str) -> String {
        let mut all = String::new();
        loop {
            let l = self.line().await;
            all.push_str(&l);
            if l.starts_with(&format!("{tag} ")) || l.starts_with("+ ") {
                return all;
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(line).await;
        let tag = line.split(' ').next().unwrap_or_default().to_owned();
        self.until(&tag).await
    }

    async fn xoauth2(&mut self, user: &str, token: &str) -> String {
        let payload = B64.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
        self.cmd(&format!("a AUTHENTICATE XOAUTH2 {payload}")).await
    }
}

const EXO_APP: &str = "https://outlook.office365.com";
const AUTH_OK: &str = "a OK AUTHENTICATE completed.\r\n";
const AUTH_NO: &str = "a NO AUTHENTICATE failed.\r\n";
const LOGIN_NO: &str = "a NO LOGIN failed.\r\n";

/// A server, an IMAP client signed in as adele (LOGIN), the HTTP plane over the same state,
/// and a Graph `Mail.Read` token, for tests that compare IMAP with Graph.
async fn adele_with_graph() -> (Server, Client, common::Harness, String) {
    let s = server().await;
    let (mut c, _) = Client::connect(&s).await;
    assert_eq!(
        c.cmd(&format!("a LOGIN adele@contoso.com {PASSWORD}"))
            .await,
        "a OK LOGIN completed.\r\n"
    );
    let h = common::Harness {
        router: exgate_emulator_exchange::router(s.state.clone()),
        state: s.state.clone(),
    };
    let graph = bearer(&sign(&app_claims(TID, APP, GRAPH, &["Mail.Read"])));
    (s, c, h, graph)
}

fn app_imap() -> String {
    sign(&app_claims(TID, APP, EXO_APP, &["IMAP.AccessAsApp"]))
}

#[tokio::test]
async fn greeting_capability_and_unauthenticated_commands() {
    let s = server().await;
    let (mut c, greeting) = Client::connect(&s).await;
    assert!(
        greeting.starts_with("* OK The Microsoft Exchange IMAP4 service is ready. ["),
        "{greeting}"
    );
    assert!(greeting.ends_with("]\r\n"));
    assert_eq!(
        c.cmd("a CAPABILITY").await,
        "* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT \
         CHILDREN IDLE NAMESPACE LITERAL+\r\na OK CAPABILITY completed.\r\n"
    );
    assert_eq!(
        c.cmd("b SELECT INBOX").await,
        "b BAD User is not authenticated.\r\n"
    );
    assert_eq!(
        c.cmd("c LIST \"\" \"*\"").await,
        "c BAD User is not authenticated.\r\n"
    );
    assert_eq!(c.cmd("d FROB").await, "d BAD Command Error. 12\r\n");
    assert_eq!(c.cmd("e NOOP").await, "e OK NOOP completed.\r\n");
    let id = c.cmd("f ID (\"name\" \"test\")").await;
    assert!(id.starts_with("* ID ("), "{id}");
    assert!(id.ends_with("f OK ID completed.\r\n"));
    assert_eq!(
        c.cmd("g LOGOUT").await,
        "* BYE Microsoft Exchange Server IMAP4 server signing off.\r\ng OK LOGOUT completed.\r\n"
    );
}

#[tokio::test]
async fn xoauth2_app_only_then_list_select_status_agree_with_graph() {
    let s = server().await;
    let (mut c, _) = Client::connect(&s).await;
    assert_eq!(c.xoauth2("adele@contoso.com", &app_imap()).await, AUTH_OK);
    let list = c.cmd("b LIST \"\" \"*\"").await;
    assert!(
        list.contains("* LIST (\\HasChildren) \"/\" INBOX\r\n"),
        "{list}"
    );
    assert!(
        list.contains("* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n"),
        "{list}"
    );
    assert!(
        list.contains("* LIST (\\HasNoChildren) \"/\" \"INBOX/Project 2\"\r\n"),
        "{list}"
    );
    assert!(list.ends_with("b OK LIST completed.\r\n"));

    // What Graph says of the Inbox.
    let h = common::Harness {
        router: exgate_emulator_exchange::router(s.state.clone()),
        state: s.state.clone(),
    };
    let graph = bearer(&sign(&app_claims(TID, APP, GRAPH, &["Mail.Read"])));
    let v = h
        .get(
            "/v1.0/users/adele@contoso.com/mailFolders/inbox",
            Some(&graph),
        )
        .await
        .json();
    let total = v["totalItemCount"].as_u64().expect("total");
    let unread = v["unreadItemCount"].as_u64().expect("unread");
    assert_eq!(total, 7);

    let sel = c.cmd("c SELECT INBOX").await;
    assert!(
        sel.starts_with(&format!("* {total} EXISTS\r\n* 0 RECENT\r\n* FLAGS (")),
        "{sel}"
    );
    assert!(sel.contains("* OK [UIDVALIDITY "), "{sel}");
    assert!(
        sel.contains(&format!("* OK [UIDNEXT {}] ", total + 1)),
        "{sel}"
    );
    assert!(
        sel.ends_with("c OK [READ-WRITE] SELECT completed.\r\n"),
        "{sel}"
    );
    assert_eq!(
        c.cmd("d STATUS INBOX (MESSAGES UNSEEN)").await,
        format!("* STATUS INBOX (MESSAGES {total} UNSEEN {unread})\r\nd OK STATUS completed.\r\n")
    );
    let fetch = c.cmd("e FETCH 1:* (FLAGS)").await;
    assert_eq!(
        fetch.matches(" FETCH (FLAGS (").count() as u64,
        total,
        "{fetch}"
    );
    assert_eq!(fetch.matches("FLAGS ()").count() as u64, unread, "{fetch}");
    let uid = c.cmd("f UID FETCH 1:* (FLAGS)").await;
    assert!(uid.contains("* 1 FETCH (UID 1 FLAGS"), "{uid}");
    let search = c.cmd("g SEARCH UNSEEN").await;
    assert_eq!(
        search.lines().next().unwrap_or_default().split(' ').count() as u64 - 2,
        unread,
        "{search}"
    );
    let ex = c.cmd("h EXAMINE \"Sent Items\"").await;
    assert!(ex.starts_with("* 2 EXISTS\r\n"), "{ex}");
    assert!(
        ex.ends_with("h OK [READ-ONLY] EXAMINE completed.\r\n"),
        "{ex}"
    );
    assert_eq!(
        c.cmd("i SELECT Nowhere").await,
        "i NO Folder not found.\r\n"
    );
    assert_eq!(
        c.cmd("j AUTHENTICATE XOAUTH2 x").await,
        "j BAD Command received in Invalid state.\r\n"
    );
    assert!(s.state.stats().imap_sessions >= 1);
}

#[tokio::test]
async fn xoauth2_refusals_are_bare() {
    let s = server().await;
    let cases = [
        // No IMAP.AccessAsApp role.
        (
            "adele@contoso.com",
            sign(&app_claims(TID, APP, EXO_APP, &["full_access_as_app"])),
        ),
        // Graph audience.
        (
            "adele@contoso.com",
            sign(&app_claims(TID, APP, GRAPH, &["IMAP.AccessAsApp"])),
        ),
        // App access scope excludes Bob.
        (
            "bob@contoso.com",
            sign(&app_claims(TID, SCOPED_APP, EXO_APP, &["IMAP.AccessAsApp"])),
        ),
        // Foreign key.
        (
            "adele@contoso.com",
            sign_with(
                &app_claims(TID, APP, EXO_APP, &["IMAP.AccessAsApp"]),
                foreign_key(),
            ),
        ),
        // Delegated token of Bob naming Adele.
        (
            "adele@contoso.com",
            user_token("bob@contoso.com", EXO_APP, "IMAP.AccessAsUser.All"),
        ),
        // Delegated without the IMAP scope.
        (
            "bob@contoso.com",
            user_token("bob@contoso.com", EXO_APP, "EWS.AccessAsUser.All"),
        ),
        // Switches: mailbox and organisation.
        ("noimap@contoso.com", app_imap()),
        (
            "lena@litware.com",
            sign(&app_claims(LIT_TID, APP, EXO_APP, &["IMAP.AccessAsApp"])),
        ),
    ];
    for (user, token) in cases {
        let (mut c, _) = Client::connect(&s).await;
        assert_eq!(c.xoauth2(user, &token).await, AUTH_NO, "{user}");
        assert_eq!(
            c.cmd("b SELECT INBOX").await,
            "b BAD User is not authenticated.\r\n"
        );
    }
    // The same app reaches a mailbox inside its scope.
    let (mut c, _) = Client::connect(&s).await;
    let scoped = sign(&app_claims(TID, SCOPED_APP, EXO_APP, &["IMAP.AccessAsApp"]));
    assert_eq!(c.xoauth2("adele@contoso.com", &scoped).await, AUTH_OK);
}

#[tokio::test]
async fn delegated_xoauth2_in_two_steps() {
    let s = server().await;
    let (mut c, _) = Client::connect(&s).await;
    assert_eq!(c.cmd("a AUTHENTICATE XOAUTH2").await, "+ \r\n");
    let token = user_token("bob@contoso.com", EXO_APP, "IMAP.AccessAsUser.All");
    let payload = B64.encode(format!(
        "user=bob@contoso.com\x01auth=Bearer {token}\x01\x01"
    ));
    c.send(&payload).await;
    assert_eq!(c.until("a").await, AUTH_OK);
    let st = c.cmd("b STATUS INBOX (MESSAGES)").await;
    assert_eq!(
        st,
        "* STATUS INBOX (MESSAGES 7)\r\nb OK STATUS completed.\r\n"
    );
}

#[tokio::test]
async fn login_and_plain_refusals_are_identical() {
    let s = server().await;
    let (mut c, _) = Client::connect(&s).await;
    assert_eq!(
        c.cmd(&format!("a LOGIN adele@contoso.com {PASSWORD}"))
            .await,
        "a OK LOGIN completed.\r\n"
    );
    for (user, pw) in [
        ("adele@contoso.com", "wrong"),
        ("fred@fabrikam.com", PASSWORD), // Basic off for the tenant
        ("mfa@contoso.com", PASSWORD),
        ("lena@litware.com", PASSWORD), // IMAP off for the organisation
        ("nobody@nowhere.example", PASSWORD),
    ] {
        let (mut c, _) = Client::connect(&s).await;
        assert_eq!(
            c.cmd(&format!("a LOGIN \"{user}\" \"{pw}\"")).await,
            LOGIN_NO,
            "{user}"
        );
        let plain = B64.encode(format!("\0{user}\0{pw}"));
        assert_eq!(
            c.cmd(&format!("a AUTHENTICATE PLAIN {plain}")).await,
            AUTH_NO,
            "{user}"
        );
    }
    // A literal password (synchronising literal).
    let (mut c, _) = Client::connect(&s).await;
    c.send(&format!("a LOGIN bob@contoso.com {{{}}}", PASSWORD.len()))
        .await;
    assert_eq!(c.line().await, "+ Ready for additional command text.\r\n");
    c.send(PASSWORD).await;
    assert_eq!(c.until("a").await, "a OK LOGIN completed.\r\n");
    let plain = B64.encode(format!("\0adele@contoso.com\0{PASSWORD}"));
    let (mut c, _) = Client::connect(&s).await;
    assert_eq!(
        c.cmd(&format!("a AUTHENTICATE PLAIN {plain}")).await,
        AUTH_OK
    );
}

#[tokio::test]
async fn limits_and_timeouts() {
    let s = server_with(ImapOptions {
        read_timeout: std::time::Duration::from_millis(1000),
        max_connections: 1,
        ..ImapOptions::default()
    })
    .await;
    let (mut c, _) = Client::connect(&s).await;
    let long = format!("a NOOP {}", "x".repeat(20_000));
    c.send(&long).await;
    assert_eq!(c.line().await, "* BAD Command Error. 10\r\n");
    c.send("b LOGIN x {999999}").await;
    assert_eq!(c.line().await, "b BAD Command Argument Error. 11\r\n");
    // A second connection is turned away while the first holds the only slot.
    let (mut d, bye) = Client::connect(&s).await;
    assert_eq!(bye, "* BYE Too many concurrent connections.\r\n");
    let mut rest = String::new();
    let _ = d.io.read_line(&mut rest).await;
    // The first one times out.
    assert_eq!(c.line().await, "* BYE Connection is closed. 13\r\n");
}

#[tokio::test]
async fn fetch_reads_message_content_as_imap_clients_ask_for_it() {
    let s = server().await;
    let (mut c, _) = Client::connect(&s).await;
    assert_eq!(
        c.cmd(&format!("a LOGIN adele@contoso.com {PASSWORD}"))
            .await,
        "a OK LOGIN completed.\r\n"
    );
    c.cmd("b SELECT INBOX").await;
    let r = c.cmd("c FETCH 1 (UID RFC822.SIZE BODY.PEEK[])").await;
    let size: usize = r
        .split("RFC822.SIZE ")
        .nth(1)
        .and_then(|x| x.split(' ').next())
        .and_then(|x| x.parse().ok())
        .expect("size");
    assert!(r.contains(&format!("BODY[] {{{size}}}\r\n")), "{r}");
    let literal_start =
        r.find(&format!("{{{size}}}\r\n")).expect("literal") + format!("{{{size}}}\r\n").len();
    let message = &r[literal_start..literal_start + size];
    assert!(
        message.contains("\r\nSubject: ") && message.contains("\r\n\r\n"),
        "{message}"
    );
    assert!(r.ends_with(")\r\nc OK FETCH completed.\r\n"), "{r}");
    // Chosen header fields only, then the blank line.
    let r = c
        .cmd("d FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")
        .await;
    let lit = r.split_once("}\r\n").expect("literal").1;
    let header = &lit[..lit.find("\r\n\r\n").expect("end") + 4];
    assert!(
        header.starts_with("From: ") || header.starts_with("Subject: "),
        "{r}"
    );
    assert_eq!(header.matches("\r\n").count(), 3, "{r}");
    assert!(!header.contains("Message-ID"), "{r}");
    // A partial of the text, RFC822.HEADER, INTERNALDATE, UID FETCH.
    let r = c
        .cmd("e UID FETCH 1 (BODY.PEEK[TEXT]<0.5> INTERNALDATE)")
        .await;
    assert!(r.contains("BODY[TEXT]<0> {5}\r\n"), "{r}");
    assert!(r.contains("INTERNALDATE \""), "{r}");
    assert!(r.contains(" +0000\""), "{r}");
    let r = c.cmd("f FETCH 1 RFC822.HEADER").await;
    assert!(r.contains("RFC822.HEADER {"), "{r}");
    // ENVELOPE and BODYSTRUCTURE, from the message's own header.
    let r = c.cmd("g FETCH 1 (ENVELOPE BODYSTRUCTURE)").await;
    assert!(r.starts_with("* 1 FETCH (ENVELOPE (\""), "{r}");
    assert!(
        r.contains(" \"contoso.com\")"),
        "an address (name NIL mailbox host): {r}"
    );
    assert!(
        r.contains("BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \""),
        "{r}"
    );
    let first = r.lines().next().unwrap_or_default();
    assert_eq!(
        first.matches('(').count(),
        first.matches(')').count(),
        "{first}"
    );
    // What is not served yet is refused as Exchange refuses an unknown item.
    assert_eq!(
        c.cmd("h FETCH 1 (X-GM-LABELS)").await,
        "h BAD Command Argument Error. 11\r\n"
    );
}

#[tokio::test]
async fn store_and_fetch_change_the_read_state_every_view_shares() {
    let (_s, mut c, h, graph) = adele_with_graph().await;
    let unread = || async {
        h.get(
            "/v1.0/users/adele@contoso.com/mailFolders/inbox",
            Some(&graph),
        )
        .await
        .json()["unreadItemCount"]
            .as_u64()
            .expect("unread")
    };
    let before = unread().await;
    c.cmd("b SELECT INBOX").await;
    // Mark every message read, then the first one unread.
    let r = c.cmd("c STORE 1:* +FLAGS.SILENT (\\Seen)").await;
    assert_eq!(r, "c OK STORE completed.\r\n");
    assert_eq!(unread().await, 0);
    let r = c.cmd("d UID STORE 1 -FLAGS (\\Seen)").await;
    assert!(r.starts_with("* 1 FETCH (UID 1 FLAGS ())\r\n"), "{r}");
    assert_eq!(unread().await, 1);
    assert_eq!(
        c.cmd("e STATUS INBOX (UNSEEN)").await,
        "* STATUS INBOX (UNSEEN 1)\r\ne OK STATUS completed.\r\n"
    );
    // A peek leaves it unread; a body fetch reads it and says so.
    let r = c.cmd("f FETCH 1 (BODY.PEEK[HEADER])").await;
    assert!(!r.contains("\\Seen"), "{r}");
    let r = c.cmd("g FETCH 1 (BODY[TEXT])").await;
    assert!(r.contains("FLAGS (\\Seen))\r\n"), "{r}");
    assert_eq!(unread().await, 0);
    // Flags the emulator does not keep are refused; a read-only folder refuses STORE.
    assert_eq!(
        c.cmd("h STORE 1 +FLAGS (\\Flagged)").await,
        "h BAD Command Argument Error. 11\r\n"
    );
    c.cmd("i EXAMINE INBOX").await;
    assert_eq!(
        c.cmd("j STORE 1 -FLAGS (\\Seen)").await,
        "j NO Command received in Invalid state.\r\n"
    );
    assert!(before > 0);
}

#[tokio::test]
async fn append_stores_a_message_every_view_sees() {
    let (_s, mut c, h, graph) = adele_with_graph().await;
    let total = || async {
        h.get(
            "/v1.0/users/adele@contoso.com/mailFolders/inbox",
            Some(&graph),
        )
        .await
        .json()["totalItemCount"]
            .as_u64()
            .expect("total")
    };
    let before = total().await;
    let message = "From: Nestor <nestor@contoso.com>\r\nTo: adele@contoso.com\r\nSubject: Appended by a sync tool\r\nMessage-ID: <append-1@contoso.com>\r\n\r\nHello from APPEND.\r\n";
    // LITERAL+: the literal follows at once.
    let r = c
        .cmd(&format!(
            "b APPEND INBOX (\\Seen) \"02-Nov-2026 10:00:00 +0000\" {{{}+}}\r\n{message}",
            message.len()
        ))
        .await;
    let uid: u32 = r
        .strip_prefix("b OK [APPENDUID ")
        .and_then(|x| x.split(' ').nth(1))
        .and_then(|x| x.trim_end_matches(']').parse().ok())
        .unwrap_or_else(|| panic!("{r}"));
    assert!(r.ends_with("] APPEND completed.\r\n"), "{r}");
    assert_eq!(total().await, before + 1);
    c.cmd("c SELECT INBOX").await;
    let r = c
        .cmd(&format!(
            "d UID FETCH {uid} (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])"
        ))
        .await;
    assert!(r.contains("Subject: Appended by a sync tool\r\n"), "{r}");
    assert!(r.contains("nestor@contoso.com"), "{r}");
    assert!(r.contains("FLAGS (\\Seen)"), "{r}");
    // A folder that does not exist.
    let r = c.cmd("e APPEND Nowhere {1+}\r\nx").await;
    assert_eq!(r, "e NO [TRYCREATE] Folder not found.\r\n");
}

#[tokio::test]
async fn copy_and_move_give_new_items_every_view_sees() {
    let (_s, mut c, h, graph) = adele_with_graph().await;
    let count = |folder: &'static str| {
        let h = &h;
        let graph = graph.clone();
        async move {
            h.get(
                &format!("/v1.0/users/adele@contoso.com/mailFolders/{folder}"),
                Some(&graph),
            )
            .await
            .json()["totalItemCount"]
                .as_u64()
                .expect("total")
        }
    };
    let (inbox, deleted, archive) = (
        count("inbox").await,
        count("deleteditems").await,
        count("archive").await,
    );
    c.cmd("b SELECT INBOX").await;
    let r = c.cmd("c COPY 1 Archive").await;
    assert!(r.starts_with("c OK [COPYUID "), "{r}");
    assert!(r.ends_with("] COPY completed.\r\n"), "{r}");
    assert_eq!(count("archive").await, archive + 1);
    assert_eq!(count("inbox").await, inbox);
    let r = c.cmd("d UID MOVE 1:2 \"Deleted Items\"").await;
    assert!(r.starts_with("* OK [COPYUID "), "{r}");
    assert!(r.contains("* 2 EXPUNGE\r\n* 1 EXPUNGE\r\n"), "{r}");
    assert!(r.ends_with("d OK UID MOVE completed.\r\n"), "{r}");
    assert_eq!(count("inbox").await, inbox - 2);
    assert_eq!(count("deleteditems").await, deleted + 2);
    let r = c.cmd("e MOVE 1 Nowhere").await;
    assert_eq!(r, "e NO [TRYCREATE] Folder not found.\r\n");
}

#[tokio::test]
async fn deleted_flags_are_expunged_by_expunge_uid_expunge_and_close() {
    let (_s, mut c, h, graph) = adele_with_graph().await;
    let total = || async {
        h.get(
            "/v1.0/users/adele@contoso.com/mailFolders/inbox",
            Some(&graph),
        )
        .await
        .json()["totalItemCount"]
            .as_u64()
            .expect("total")
    };
    let before = total().await;
    c.cmd("b SELECT INBOX").await;
    let r = c.cmd("c STORE 1:2 +FLAGS (\\Deleted)").await;
    assert!(
        r.contains("* 1 FETCH (FLAGS (") && r.contains("\\Deleted)"),
        "{r}"
    );
    // Marked, not gone.
    assert_eq!(total().await, before);
    let r = c.cmd("d EXPUNGE").await;
    assert_eq!(
        r,
        "* 2 EXPUNGE\r\n* 1 EXPUNGE\r\nd OK EXPUNGE completed.\r\n"
    );
    assert_eq!(total().await, before - 2);
    // UID EXPUNGE removes only the UIDs given.
    let uids = c.cmd("e UID SEARCH ALL").await;
    let list: Vec<u32> = uids
        .lines()
        .next()
        .unwrap_or_default()
        .split(' ')
        .skip(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    let (u1, u2) = (list[0], list[1]);
    c.cmd(&format!("f UID STORE {u1}:{u2} +FLAGS.SILENT (\\Deleted)"))
        .await;
    let r = c.cmd(&format!("g UID EXPUNGE {u2}")).await;
    assert_eq!(r, "* 2 EXPUNGE\r\ng OK UID EXPUNGE completed.\r\n");
    assert_eq!(total().await, before - 3);
    // CLOSE expunges the rest silently.
    assert_eq!(c.cmd("h CLOSE").await, "h OK CLOSE completed.\r\n");
    assert_eq!(total().await, before - 4);
}

/// CREATE, RENAME, DELETE, SUBSCRIBE: one folder tree, the same in IMAP, Graph and EWS.
#[tokio::test]
async fn folders_created_renamed_and_deleted_are_the_folders_every_view_sees() {
    let (_s, mut c, h, graph) = adele_with_graph().await;
    let graph_names = |path: &'static str| {
        let h = &h;
        let graph = graph.clone();
        async move {
            let v = h
                .get(
                    &format!("/v1.0/users/adele@contoso.com/{path}"),
                    Some(&graph),
                )
                .await
                .json();
            v["value"]
                .as_array()
                .expect("value")
                .iter()
                .filter_map(|f| f["displayName"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        }
    };

    // A nested CREATE makes the missing levels, as Exchange does.
    assert_eq!(
        c.cmd("b CREATE Clients/Acme").await,
        "b OK CREATE completed.\r\n"
    );
    assert_eq!(
        c.cmd("c CREATE Clients").await,
        "c NO Mailbox already exists.\r\n"
    );
    assert_eq!(
        c.cmd("d CREATE \"INBOX/To file\"").await,
        "d OK CREATE completed.\r\n"
    );
    let r = c.cmd("e LIST \"\" *").await;
    assert!(
        r.contains("* LIST (\\HasChildren) \"/\" Clients\r\n"),
        "{r}"
    );
    assert!(
        r.contains("* LIST (\\HasNoChildren) \"/\" Clients/Acme\r\n"),
        "{r}"
    );
    assert!(r.contains("\"/\" \"INBOX/To file\"\r\n"), "{r}");
    assert!(
        graph_names("mailFolders")
            .await
            .contains(&"Clients".to_owned())
    );
    assert!(
        graph_names("mailFolders/inbox/childFolders")
            .await
            .contains(&"To file".to_owned())
    );

    // Messages go into a created folder and are counted there.
    assert!(c.cmd("f SELECT INBOX").await.contains("f OK [READ-WRITE]"));
    assert!(
        c.cmd("g COPY 1:2 Clients/Acme")
            .await
            .starts_with("g OK [COPYUID ")
    );
    let r = c.cmd("h STATUS Clients/Acme (MESSAGES)").await;
    assert!(r.starts_with("* STATUS Clients/Acme (MESSAGES 2)"), "{r}");

    // RENAME moves the folder with what is under it; a well-known folder keeps its name.
    assert_eq!(
        c.cmd("i RENAME Clients Customers").await,
        "i OK RENAME completed.\r\n"
    );
    let r = c.cmd("j STATUS Customers/Acme (MESSAGES)").await;
    assert!(r.starts_with("* STATUS Customers/Acme (MESSAGES 2)"), "{r}");
    assert_eq!(
        c.cmd("k SELECT Clients").await,
        "k NO Folder not found.\r\n"
    );
    assert_eq!(
        c.cmd("l RENAME Archive Old").await,
        "l NO RENAME failed.\r\n"
    );
    assert_eq!(
        c.cmd("m RENAME Customers/Acme \"INBOX/To file\"").await,
        "m NO Mailbox already exists.\r\n"
    );
    assert_eq!(
        c.cmd("n RENAME Nowhere Elsewhere").await,
        "n NO Folder not found.\r\n"
    );

    // SUBSCRIBE / UNSUBSCRIBE change LSUB, not LIST.
    assert_eq!(
        c.cmd("o UNSUBSCRIBE Customers/Acme").await,
        "o OK UNSUBSCRIBE completed.\r\n"
    );
    let lsub = c.cmd("p LSUB \"\" *").await;
    assert!(!lsub.contains("Customers/Acme"), "{lsub}");
    assert!(c.cmd("q LIST \"\" *").await.contains("Customers/Acme"));
    assert_eq!(
        c.cmd("r SUBSCRIBE Customers/Acme").await,
        "r OK SUBSCRIBE completed.\r\n"
    );
    assert!(c.cmd("s LSUB \"\" *").await.contains("Customers/Acme"));

    // DELETE removes the folder and everything under it; INBOX cannot be deleted.
    assert_eq!(
        c.cmd("t DELETE Customers").await,
        "t OK DELETE completed.\r\n"
    );
    let r = c.cmd("u LIST \"\" *").await;
    assert!(!r.contains("Customers"), "{r}");
    assert!(
        !graph_names("mailFolders")
            .await
            .contains(&"Customers".to_owned())
    );
    assert_eq!(c.cmd("v DELETE INBOX").await, "v NO DELETE failed.\r\n");
    assert_eq!(
        c.cmd("w DELETE Customers").await,
        "w NO Folder not found.\r\n"
    );
    // A name made again is a new folder, empty.
    assert_eq!(
        c.cmd("x CREATE Customers").await,
        "x OK CREATE completed.\r\n"
    );
    let r = c.cmd("y STATUS Customers (MESSAGES)").await;
    assert!(r.starts_with("* STATUS Customers (MESSAGES 0)"), "{r}");
}

/// A refused DELETE leaves the selection as it was; a change of case renames a folder.
#[tokio::test]
async fn a_refused_delete_keeps_the_selection_and_case_renames_work() {
    let (_s, mut c, _h, _graph) = adele_with_graph().await;
    assert!(c.cmd("b SELECT INBOX").await.contains("b OK [READ-WRITE]"));
    assert_eq!(c.cmd("c DELETE INBOX").await, "c NO DELETE failed.\r\n");
    assert!(
        c.cmd("d FETCH 1 (FLAGS)")
            .await
            .ends_with("d OK FETCH completed.\r\n"),
        "still selected"
    );
    assert_eq!(c.cmd("e CREATE Notes").await, "e OK CREATE completed.\r\n");
    assert_eq!(
        c.cmd("f RENAME Notes NOTES").await,
        "f OK RENAME completed.\r\n"
    );
    assert!(c.cmd("g LIST \"\" NOTES").await.contains("\"/\" NOTES\r\n"));
}

/// Folder names outside ASCII travel in modified UTF-7 (RFC 3501 5.1.3): a folder created
/// through IMAP as `&ZeVnLIqe-` is 日本語 in Graph, and selected by its encoded name.
#[tokio::test]
async fn folder_names_travel_in_modified_utf7() {
    let (_s, mut c, h, graph) = adele_with_graph().await;
    assert_eq!(
        c.cmd("b CREATE \"INBOX/&ZeVnLIqe-\"").await,
        "b OK CREATE completed.\r\n"
    );
    let v = h
        .get(
            "/v1.0/users/adele@contoso.com/mailFolders/inbox/childFolders",
            Some(&graph),
        )
        .await
        .json();
    let names: Vec<&str> = v["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|f| f["displayName"].as_str())
        .collect();
    assert!(names.contains(&"\u{65e5}\u{672c}\u{8a9e}"), "{v}");
    let r = c.cmd("c LIST \"\" \"INBOX/*\"").await;
    assert!(r.contains("\"/\" INBOX/&ZeVnLIqe-\r\n"), "{r}");
    assert!(
        c.cmd("d SELECT \"INBOX/&ZeVnLIqe-\"")
            .await
            .contains("d OK [READ-WRITE]")
    );
    assert_eq!(
        c.cmd("e CREATE \"&ZeVn\"").await,
        "e NO CREATE failed.\r\n",
        "not modified UTF-7"
    );
}
