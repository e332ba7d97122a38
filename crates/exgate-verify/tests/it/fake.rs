//! A scriptable prober: faults can be injected and removed between runs, and every call is
//! counted per address.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use exgate_verify::{
    Cause, Evidence, Prober, Project, Resolved, Side, StepFailure, StepName, StepOutput, Target,
    TokenKey,
};

#[derive(Default)]
pub(crate) struct Fake {
    /// (side, step, address) that fail for one mailbox.
    pub mailbox_faults: Mutex<HashSet<(Side, StepName, String)>>,
    /// (side, step) that fail for the whole endpoint.
    pub endpoint_faults: Mutex<HashSet<(Side, StepName)>>,
    /// Resolve calls per source address (one per verified mailbox).
    pub resolves: Mutex<HashMap<String, u32>>,
}

pub(crate) fn cause(id: &str) -> Cause {
    Cause {
        id: id.to_owned(),
        confidence: 0.9,
        title: format!("title of {id}"),
        explanation: "explained".into(),
        evidence: vec!["seen".into()],
        entry: String::new(),
        fix: vec![format!("fix for {id}")],
        references: vec![],
        check: None,
    }
}

impl Fake {
    fn check(&self, side: Side, step: StepName, address: &str) -> Result<(), StepFailure> {
        if self.endpoint_faults.lock().unwrap().contains(&(side, step)) {
            return Err(StepFailure::endpoint(
                "AADSTS7000215: Invalid client secret provided",
                Evidence {
                    status: Some(401),
                    code: Some("AADSTS7000215".into()),
                    message: "Invalid client secret provided".into(),
                    ..Evidence::default()
                },
                vec![cause("invalid_client_secret")],
            ));
        }
        if self
            .mailbox_faults
            .lock()
            .unwrap()
            .contains(&(side, step, address.to_owned()))
        {
            return Err(StepFailure::mailbox(
                "ErrorNonExistentMailbox",
                Evidence {
                    code: Some("ErrorNonExistentMailbox".into()),
                    ..Evidence::default()
                },
                vec![cause("mailbox_not_found")],
            ));
        }
        Ok(())
    }

    pub(crate) fn resolves_of(&self, address: &str) -> u32 {
        self.resolves
            .lock()
            .unwrap()
            .get(address)
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn total_resolves(&self) -> u32 {
        self.resolves
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.contains("@contoso"))
            .map(|(_, v)| *v)
            .sum()
    }
}

impl Prober for Fake {
    type Token = String;

    async fn resolve(&self, t: &Target) -> Result<Resolved, StepFailure> {
        *self
            .resolves
            .lock()
            .unwrap()
            .entry(t.address.clone())
            .or_default() += 1;
        self.check(t.side, StepName::Resolve, &t.address)?;
        Ok(Resolved {
            url: format!("https://{}.example/ews", t.side),
        })
    }

    fn token_key(&self, t: &Target, r: &Resolved) -> TokenKey {
        TokenKey {
            side: t.side,
            tenant: t.endpoint.tenant_key(),
            resource: r.url.clone(),
            principal: None,
        }
    }

    async fn acquire_token(&self, t: &Target, _: &TokenKey) -> Result<String, StepFailure> {
        self.check(t.side, StepName::Token, &t.address)?;
        Ok("tok".into())
    }

    async fn open(&self, t: &Target, _: &Resolved, _: &String) -> Result<StepOutput, StepFailure> {
        self.check(t.side, StepName::Open, &t.address)?;
        Ok(StepOutput::detail("opened"))
    }

    async fn inbox_count(
        &self,
        t: &Target,
        _: &Resolved,
        _: &String,
    ) -> Result<StepOutput, StepFailure> {
        self.check(t.side, StepName::Inbox, &t.address)?;
        Ok(StepOutput {
            detail: Some("Inbox".into()),
            item_count: Some(7),
        })
    }

    async fn write_probe(
        &self,
        t: &Target,
        _: &Resolved,
        _: &String,
    ) -> Result<StepOutput, StepFailure> {
        self.check(t.side, StepName::WriteProbe, &t.address)?;
        Ok(StepOutput::detail("probe item created and deleted"))
    }
}

/// A project of `n` mailboxes named `user{i}@contoso.com`, under a unique name.
pub(crate) fn project(name: &str, n: usize) -> Project {
    let mut text = format!(
        r#"name = "{name}"
[source]
kind = "exchange-onprem"
url = "https://mail.contoso.com/EWS/Exchange.asmx"
[source.auth]
mode = "basic"
username = "svc@contoso.com"
password = "pw"
impersonation = true

[destination]
kind = "exchange-online"
api = "graph"
tenant = "fabrikam.onmicrosoft.com"
[destination.auth]
mode = "app-secret"
client_id = "11111111-2222-3333-4444-555555555555"
secret = "s"
"#
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[mailboxes]]\nsource = \"user{i}@contoso.com\"\ndestination = \"user{i}@fabrikam.com\"\n"
        ));
    }
    exgate_verify::project::parse(
        &text,
        Path::new("p.toml"),
        &HashMap::<String, String>::new(),
    )
    .unwrap()
}
