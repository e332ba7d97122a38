//! Every example command line of every `--help`, of the README and of the fenced shell blocks of
//! `docs/` is accounted for here, by its words:
//! - run as written, in a directory that holds the files it names (the repository's `scenarios/`
//!   and `examples/`, and the user's own files the example names: `error.txt`, `capture.har`,
//!   the cmdlet output of `hma check`...), its exit code checked;
//! - a server (`emulator`, `consent listen`, `gateway run`) started as written, checked to be
//!   still serving, then stopped;
//! - the gateway's quick start of `docs/gateway.md`, run in its order in `examples/gateway`
//!   against the emulator it starts;
//! - run end to end by another test, named;
//! - or named with why it needs what no test machine has (a real tenant, a real host, a person
//!   at a browser).
//!
//! A new example that is none of these, or an entry here whose example is gone, fails the test.
//! Absolute `/tmp/...` paths of examples are taken inside the test's directory.

#[path = "../src/example_lines.rs"]
mod example_lines;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use example_lines::{command_lines, shell_blocks, words};

/// What the test does with one example.
#[derive(Debug, Clone, Copy)]
enum How {
    /// Run in the work directory; the exit codes it may end with (1: it found failures).
    Run(&'static [i32]),
    /// A server: started in the work directory, still running after start-up, stopped.
    Serve,
    /// A step of the gateway's quick start (`docs/gateway.md`), run in `examples/gateway`.
    QuickStart(&'static [i32]),
    /// Run end to end by this test.
    Elsewhere(&'static str),
    /// Needs what a test machine does not have.
    Live(&'static str),
}

use How::{Elsewhere, Live, QuickStart, Run, Serve};

const TENANT: &str = "signs in to a real tenant (contoso.com) at login.microsoftonline.com";
const EXO: &str = "connects to Exchange Online (outlook.office365.com) as a real mailbox";
const PROJECT: &str = "a project of the user's own tenants (examples/projects/migration.toml names contoso and fabrikam)";
const PLACEHOLDER: &str = "`...` stands for the user's own application (client) id";
const MAIL: &str = "mail_protocols_cli.rs runs smtp/imap/pop check with --connect, --host, \
--authority-host and --ca-cert against the emulator's mail ports";

/// Every example, by its words (what `words` keeps of the line), with what to do with it. The
/// order is the order of running: `cert new` before `cert show`.
const EXAMPLES: &[(&str, How)] = &[
    ("exgate explain error.txt", Run(&[1])),
    ("exgate explain capture.har --json", Run(&[1])),
    ("exgate explain response.txt --now 1700000000", Run(&[1])),
    ("exgate redact capture.har shared.har", Run(&[0])),
    ("exgate redact trace.txt", Run(&[0])),
    (
        "exgate redact capture.har out.har --tokens remove",
        Run(&[0]),
    ),
    (
        "exgate token inspect token.txt --for https://outlook.office365.com/EWS/Exchange.asmx",
        Run(&[0]),
    ),
    (
        "exgate token inspect - --for http://mail.contoso.com/EWS/Exchange.asmx",
        Run(&[0, 1]),
    ),
    (
        "exgate token inspect response.json --app-only --json",
        Run(&[0, 1]),
    ),
    ("exgate token get --new-store-key tokens.key", Run(&[0])),
    (
        "exgate cert new --subject CN=exgate-daemon,O=Contoso --out daemon",
        Run(&[0]),
    ),
    ("exgate cert show daemon.cert.pem", Run(&[0])),
    (
        "exgate cert show daemon.pfx --password-env EXGATE_PFX_PASSWORD --json",
        Run(&[0]),
    ),
    (
        "exgate consent url --client-id aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee --redirect-uri http://localhost:8400/",
        Run(&[0]),
    ),
    ("exgate hma collect-script", Run(&[0])),
    ("exgate hma check --cmdlets exgate-hma.txt", Run(&[0, 1])),
    (
        "exgate hma check --cmdlets vdirs.txt spns.txt evidence/ --json --html hma.html",
        Run(&[0, 1]),
    ),
    (
        "exgate hma check --cmdlets vdirs.txt spns.txt pasted/ --json",
        Run(&[0, 1]),
    ),
    ("exgate demo", Run(&[0])),
    ("exgate demo --json", Run(&[0])),
    ("exgate demo --html demo.html", Run(&[0])),
    (
        "exgate emulator --scenario scenarios/demo.toml --tls",
        Serve,
    ),
    (
        "exgate emulator --scenario scenarios/demo.toml --tls --listen 127.0.0.1:8443 --state-file /tmp/emulator.json --ca-out /tmp/emulator-ca.pem",
        Serve,
    ),
    (
        "exgate emulator --scenario scenarios/demo.toml --token-lifetime 120",
        Serve,
    ),
    (
        "exgate emulator --scenario scenarios/demo.toml --tls --state-file /tmp/emulator.json",
        Serve,
    ),
    ("exgate consent listen --port 8400", Serve),
    (
        "exgate consent listen --port 8400 --state 7c1f --timeout 600 --json",
        Serve,
    ),
    // The quick start, in its order: the emulator, the certificate, the password, the check.
    (
        "exgate emulator --scenario scenarios/gateway.toml --tls --listen 127.0.0.1:8443 --smtp-listen 127.0.0.1:2525 --imap-listen 127.0.0.1:2993 --ca-out examples/gateway/emulator-ca.pem",
        QuickStart(&[]),
    ),
    (
        "exgate cert new --subject CN=exgate-gateway --out gateway --san localhost --san 127.0.0.1 --ecdsa",
        QuickStart(&[0]),
    ),
    ("exgate gateway passwd scanner --generate", QuickStart(&[0])),
    (
        "exgate gateway passwd scanner --config gateway.toml --generate",
        QuickStart(&[0]),
    ),
    ("exgate gateway run --check", QuickStart(&[0])),
    (
        "exgate gateway run --config gateway.toml --check",
        QuickStart(&[0]),
    ),
    ("exgate gateway run --config gateway.toml", QuickStart(&[])),
    (
        "exgate gateway status --config gateway.toml",
        QuickStart(&[0]),
    ),
    (
        "exgate gateway status --config gateway.toml --json",
        QuickStart(&[0]),
    ),
    ("exgate gateway status", QuickStart(&[0])),
    (
        "exgate gateway login frontdesk --config gateway.toml",
        Elsewhere(
            "gateway_cli.rs login_bootstraps_a_delegated_account_headless_then_the_gateway_sends_as_it",
        ),
    ),
    (
        "exgate emulator --scenario scenarios/demo.toml --tls --listen 127.0.0.1:8443 --ca-out /tmp/emulator-ca.pem",
        Elsewhere("verify_cli.rs the_emulator_example_runs_as_written"),
    ),
    (
        "exgate verify examples/projects/emulator.toml --ca-cert /tmp/emulator-ca.pem",
        Elsewhere("verify_cli.rs the_emulator_example_runs_as_written"),
    ),
    (
        "exgate imap check --user archive@contoso.com --connect 127.0.0.1:9930 --host localhost --authority-host https://localhost:8443 --ca-cert /tmp/emulator-ca.pem",
        Elsewhere(MAIL),
    ),
    (
        "exgate pop check --user helpdesk@contoso.com --connect 127.0.0.1:9950 --host localhost --authority-host https://localhost:8443 --ca-cert /tmp/emulator-ca.pem",
        Elsewhere(MAIL),
    ),
    (
        "exgate smtp check --user scanner@contoso.com --connect 127.0.0.1:2525 --host localhost --authority-host https://localhost:8443 --ca-cert /tmp/emulator-ca.pem",
        Elsewhere(MAIL),
    ),
    (
        "exgate emulator --scenario scenarios/demo.toml --tls --microsoft-names --listen 127.0.0.1:443 --ca-out /tmp/emulator-ca.pem",
        Live(
            "answers under Microsoft's host names on port 443: the hosts-file lines and the \
              privileged port are the user's to give",
        ),
    ),
    (
        "exgate verify project.toml --html report.html",
        Live(PROJECT),
    ),
    ("exgate verify migration.toml", Live(PROJECT)),
    ("exgate verify migration.toml --json", Live(PROJECT)),
    (
        "exgate verify migration.toml --write-check --html report.html",
        Live(PROJECT),
    ),
    (
        "exgate verify migration.toml --all --json --database postgres://exgate@db.example.com/exgate",
        Live(PROJECT),
    ),
    (
        "exgate verify migration.toml --all --database postgres://exgate@db.example.com/exgate",
        Live(PROJECT),
    ),
    (
        "exgate verify examples/projects/archiver.toml",
        Live("examples/projects/archiver.toml addresses a real tenant's mailboxes"),
    ),
    ("exgate token get", Live(TENANT)),
    (
        "exgate token get --profile daemon.toml --scope https://graph.microsoft.com/.default --json",
        Live(TENANT),
    ),
    (
        "exgate token get --tenant contoso.com --client-id ... --cert app.pfx --cert-password-env PFX_PW --ps256",
        Live(PLACEHOLDER),
    ),
    (
        "exgate token get --flow device_code --tenant contoso.com --client-id ... --scope https://outlook.office365.com/EWS.AccessAsUser.All --store tokens.bin --store-key-file tokens.key",
        Live(PLACEHOLDER),
    ),
    (
        "exgate token get --hma-url https://mail.contoso.com/EWS/Exchange.asmx --client-id ... --client-secret-env SECRET",
        Live(PLACEHOLDER),
    ),
    (
        "exgate consent url --tenant contoso.com --client-id ... --redirect-uri http://localhost:8400/ --authority-host http://127.0.0.1:41234 --v1",
        Live(PLACEHOLDER),
    ),
    ("exgate imap check --user archive@contoso.com", Live(EXO)),
    (
        "exgate imap check --user archive@contoso.com --token-env IMAP_TOKEN --folder Sent Items --json",
        Live(EXO),
    ),
    ("exgate pop check --user helpdesk@contoso.com", Live(EXO)),
    (
        "exgate pop check --user helpdesk@contoso.com --token-env POP_TOKEN --json",
        Live(EXO),
    ),
    ("exgate smtp check --user scanner@contoso.com", Live(EXO)),
    (
        "exgate smtp check --user scanner@contoso.com --to it@contoso.com",
        Live(EXO),
    ),
    (
        "exgate smtp check --user scanner@contoso.com --token-env SMTP_TOKEN",
        Live(EXO),
    ),
    (
        "exgate smtp check --user scanner@contoso.com --password-env SMTP_PASSWORD",
        Live(EXO),
    ),
    (
        "exgate smtp check --host mail.contoso.com --user CONTOSO\\scanner --password-env PW --ntlm",
        Live("signs in to the user's own on-premises server by name (mail.contoso.com)"),
    ),
    (
        "exgate hma check --cmdlets exgate-hma.txt --url https://mail.contoso.com https://autodiscover.contoso.com",
        Live("probes the user's own on-premises servers by name (mail.contoso.com)"),
    ),
    (
        "exgate hma check --url https://mail.contoso.com --client-id 11111111-2222-3333-4444-555555555555 --username alice@contoso.com --password-env ALICE_PASSWORD",
        Live("signs in to the user's own on-premises servers and tenant"),
    ),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every example of every `--help` (subcommands found from `Commands:`), README and docs: its
/// words (the key) and the line as written, first source first.
fn examples() -> BTreeMap<String, (String, String)> {
    fn walk(path: &mut Vec<String>, out: &mut Vec<(String, String)>) {
        let help = Command::new(cargo_bin("exgate"))
            .args(path.iter())
            .arg("--help")
            // No wrapping: an example is one line, or continued with `\`.
            .env("COLUMNS", "1000")
            .output()
            .expect("exgate --help");
        let text = String::from_utf8_lossy(&help.stdout).into_owned();
        let source = format!("exgate {} --help", path.join(" "));
        out.push((source, text.clone()));
        let mut in_commands = false;
        for line in text.lines() {
            if line == "Commands:" {
                in_commands = true;
                continue;
            }
            if in_commands {
                let Some(name) = line.split_whitespace().next() else {
                    break;
                };
                if name != "help" {
                    path.push(name.to_owned());
                    walk(path, out);
                    path.pop();
                }
            }
        }
    }
    let mut texts = Vec::new();
    walk(&mut Vec::new(), &mut texts);
    let mut docs = vec![root().join("README.md")];
    let mut more: Vec<_> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    for d in docs {
        let text = std::fs::read_to_string(&d).expect("read docs");
        texts.push((d.display().to_string(), shell_blocks(&text)));
    }
    let mut out = BTreeMap::new();
    for (source, text) in texts {
        for line in command_lines(&text) {
            let key = words(&line).expect("split").join(" ");
            out.entry(key).or_insert((source.clone(), line));
        }
    }
    out
}

/// One example line ready to run: arguments after `exgate`, redirections, `&&`.
#[derive(Debug)]
struct Plan {
    args: Vec<String>,
    stdout: Option<String>,
    stdin: Option<String>,
}

fn plan(line: &str, work: &Path) -> Plan {
    // A table of examples puts the description after a run of spaces.
    let line = line.split("   ").next().unwrap_or(line);
    let all = shlex::split(line).expect("split");
    let mut p = Plan {
        args: Vec::new(),
        stdout: None,
        stdin: None,
    };
    let mut it = all.into_iter().skip(1);
    while let Some(w) = it.next() {
        match w.as_str() {
            ">" => p.stdout = it.next(),
            "<" => p.stdin = it.next(),
            "&&" | "&" | "|" | ";" => break,
            w if w.starts_with('#') => break,
            _ => p.args.push(match w.strip_prefix("/tmp/") {
                Some(rest) => work.join("tmp").join(rest).display().to_string(),
                None => w,
            }),
        }
    }
    p
}

fn exgate(dir: &Path) -> Command {
    let mut c = Command::new(cargo_bin("exgate"));
    c.current_dir(dir)
        .env("NO_COLOR", "1")
        .env("HOME", dir)
        .env_remove("AZURE_CLIENT_ID")
        .env_remove("AZURE_TENANT_ID")
        .env_remove("AZURE_CLIENT_SECRET")
        .env_remove("EXGATE_PFX_PASSWORD");
    c
}

fn run(dir: &Path, line: &str, work: &Path, codes: &[i32]) {
    let p = plan(line, work);
    let mut cmd = exgate(dir);
    cmd.args(&p.args);
    if let Some(f) = &p.stdin {
        cmd.stdin(std::fs::File::open(dir.join(f)).expect("stdin file"));
    }
    let out = cmd.output().expect("run exgate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some_and(|c| codes.contains(&c)),
        "`{line}` exited with {:?}, expected one of {codes:?}\n{}{stderr}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.contains("panicked"), "`{line}`: {stderr}");
    if let Some(f) = &p.stdout {
        std::fs::write(dir.join(f), &out.stdout).expect("write stdout");
    }
}

/// A server started as written; killed when dropped.
struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path, line: &str, work: &Path, ready: impl Fn() -> bool) -> Server {
    let p = plan(line, work);
    let out = std::fs::File::create(work.join("server.out")).expect("server.out");
    let child = exgate(dir)
        .args(&p.args)
        .stdout(Stdio::from(out))
        .stderr(Stdio::null())
        .spawn()
        .expect("start exgate");
    let mut server = Server(child, line.to_owned());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("`{}` stopped at start-up: {status}", server.1);
        }
        assert!(Instant::now() < deadline, "`{line}` never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Still serving a moment later.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        matches!(server.0.try_wait(), Ok(None)),
        "`{line}` stopped after start-up"
    );
    server
}

fn listening(addr: &str) -> impl Fn() -> bool + '_ {
    move || std::net::TcpStream::connect(addr).is_ok()
}

/// The port an example listens on: `--listen ADDR`, `--port N`, or `None` (a free port).
fn address_of(args: &[String]) -> Option<String> {
    let after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    after("--listen").or_else(|| after("--port").map(|p| format!("127.0.0.1:{p}")))
}

/// The user's own files the examples name.
fn write_inputs(work: &Path) {
    let root = root();
    let copy = |from: &str, to: &str| {
        std::fs::copy(root.join(from), work.join(to)).unwrap_or_else(|e| panic!("{from}: {e}"));
    };
    copy_dir(&root.join("scenarios"), &work.join("scenarios"));
    copy_dir(&root.join("examples"), &work.join("examples"));
    std::fs::create_dir_all(work.join("tmp")).unwrap();
    std::fs::write(
        work.join("error.txt"),
        "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the \
         request is the client secret value, not the client secret ID, for a secret added to \
         app 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee'.\n",
    )
    .unwrap();
    std::fs::write(
        work.join("response.txt"),
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", \
         trusted_issuers=\"00000001-0000-0000-c000-000000000000@*\", token_types=\"app_asserted_user_v1 service_asserted_app_v1\", \
         error=\"invalid_token\"\r\nx-ms-diagnostics: 2000001;reason=\"The token has expired.\";error_category=\"invalid_token\"\r\n\r\n",
    )
    .unwrap();
    std::fs::write(
        work.join("trace.txt"),
        "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: outlook.office365.com\r\nAuthorization: Basic c2NhbkBjb250b3NvLmNvbTpwYXNzd29yZA==\r\n\r\n",
    )
    .unwrap();
    // An access token as Exchange Online's are shaped (header and claims; not signed by Entra).
    let b64 = |v: &serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let token = format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(&serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": "k1"})),
        b64(&serde_json::json!({
            "aud": "https://outlook.office365.com",
            "iss": "https://sts.windows.net/11111111-2222-3333-4444-555555555555/",
            "tid": "11111111-2222-3333-4444-555555555555",
            "appid": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            "roles": ["full_access_as_app"],
            "ver": "1.0",
            "iat": 1_700_000_000u64,
            "nbf": 1_700_000_000u64,
            "exp": 4_000_000_000u64,
        })),
    );
    std::fs::write(work.join("token.txt"), format!("{token}\n")).unwrap();
    std::fs::write(
        work.join("response.json"),
        serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "access_token": token})
            .to_string(),
    )
    .unwrap();
    copy(
        "crates/exgate-diagnose/tests/fixtures/ssl_offloading.har",
        "capture.har",
    );
    copy(
        "crates/exgate-hma/tests/fixtures/healthy-two-servers.txt",
        "exgate-hma.txt",
    );
    copy(
        "crates/exgate-hma/tests/fixtures/seed-spns-before-and-vdirs.txt",
        "vdirs.txt",
    );
    copy(
        "crates/exgate-hma/tests/fixtures/healthy-two-servers.txt",
        "spns.txt",
    );
    for dir in ["evidence", "pasted"] {
        std::fs::create_dir_all(work.join(dir)).unwrap();
        copy(
            "crates/exgate-hma/tests/fixtures/seed-spns-after-and-vdirs.txt",
            &format!("{dir}/cmdlets.txt"),
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn every_example_runs_as_written_or_says_why_not() {
    let found = examples();
    // Accounted for, both ways.
    let listed: BTreeMap<&str, How> = EXAMPLES.iter().copied().collect();
    assert_eq!(listed.len(), EXAMPLES.len(), "an example is listed twice");
    let unlisted: Vec<String> = found
        .iter()
        .filter(|(k, _)| !listed.contains_key(k.as_str()))
        .map(|(k, (source, _))| format!("{source}: {k}"))
        .collect();
    assert!(
        unlisted.is_empty(),
        "examples this test does not know (add each to EXAMPLES: run it, or say why not):\n{}",
        unlisted.join("\n")
    );
    let stale: Vec<&str> = listed
        .keys()
        .filter(|k| !found.contains_key(**k))
        .copied()
        .collect();
    assert!(
        stale.is_empty(),
        "listed examples no longer shown anywhere: {stale:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_inputs(work);
    let gateway_dir = work.join("examples/gateway");
    let mut quick_start: Vec<Server> = Vec::new();
    let (mut ran, mut served) = (0, 0);
    for (key, how) in EXAMPLES {
        let line = &found[*key].1;
        match how {
            Run(codes) => {
                run(work, line, work, codes);
                ran += 1;
            }
            Serve => {
                let server = match address_of(&plan(line, work).args) {
                    Some(addr) => serve(work, line, work, listening(&addr)),
                    // On a free port: ready once it has printed where it listens.
                    None => serve(work, line, work, || {
                        std::fs::read_to_string(work.join("server.out"))
                            .is_ok_and(|o| o.contains("base_url: "))
                    }),
                };
                drop(server);
                served += 1;
            }
            QuickStart(codes) => {
                if key.starts_with("exgate emulator") {
                    // Started from the repository's root, as the quick start shows.
                    quick_start.push(serve(work, line, work, || {
                        listening("127.0.0.1:2525")()
                            && gateway_dir.join("emulator-ca.pem").exists()
                    }));
                    // The step between the commands: the app's secret in a file.
                    std::fs::write(gateway_dir.join("app-secret"), "gateway-demo-secret~1")
                        .unwrap();
                    served += 1;
                } else if codes.is_empty() {
                    quick_start.push(serve(&gateway_dir, line, work, listening("127.0.0.1:2587")));
                    served += 1;
                } else {
                    run(&gateway_dir, line, work, codes);
                    ran += 1;
                }
            }
            Elsewhere(by) => eprintln!("run by {by}: {key}"),
            Live(why) => eprintln!("not run here, it {why}: {key}"),
        }
    }
    drop(quick_start);
    // The bulk of the examples run here.
    assert!(ran >= 25, "{ran} examples run");
    assert!(served >= 7, "{served} servers started");
}
