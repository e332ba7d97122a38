//! A HAR generated on the fly as a `Read`: a realistic mix of HMA handshakes, successful EWS
//! calls with SOAP bodies, and one SSL-offloading failure in every ten exchanges. Used by the
//! benchmark and by the memory example, so huge HARs never touch the disk.

use std::io::Read;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Streams `target_bytes` (approximately) of HAR JSON.
pub(crate) struct GeneratedHar {
    target_bytes: u64,
    produced: u64,
    index: u64,
    buf: Vec<u8>,
    pos: usize,
    state: State,
    token: String,
    soap: String,
}

#[derive(PartialEq)]
enum State {
    Head,
    Entries,
    Tail,
    Done,
}

impl GeneratedHar {
    /// A generator of about `target_bytes` bytes.
    pub(crate) fn new(target_bytes: u64) -> Self {
        let h = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256","x5t":"abc","kid":"abc"}"#);
        let p = URL_SAFE_NO_PAD.encode(
            br#"{"aud":"https://mail.contoso.com","iss":"https://sts.windows.net/f31f3647-5d87-4b69-a0b6-73f62aeab14c/","tid":"f31f3647-5d87-4b69-a0b6-73f62aeab14c","appid":"d3590ed6-52b3-4102-aeff-aad2292ab01c","appidacr":"0","scp":"EWS.AccessAsUser.All","upn":"user@contoso.com","ver":"1.0","iat":1700000000,"nbf":1700000000,"exp":1700003600}"#,
        );
        let token = format!("{h}.{p}.{}", "s".repeat(342));
        let item = r#"<t:Message><t:ItemId Id=\"AAMkAGI2TG93AAA=\" ChangeKey=\"CQAAABYAAAA\"/><t:Subject>Quarterly report</t:Subject><t:DateTimeReceived>2023-11-14T10:00:00Z</t:DateTimeReceived></t:Message>"#;
        let soap = format!(
            r#"<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><m:FindItemResponse><m:ResponseMessages><m:FindItemResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError</m:ResponseCode><m:RootFolder><t:Items>{}</t:Items></m:RootFolder></m:FindItemResponseMessage></m:ResponseMessages></m:FindItemResponse></s:Body></s:Envelope>"#,
            item.repeat(10)
        );
        GeneratedHar {
            target_bytes,
            produced: 0,
            index: 0,
            buf: Vec::new(),
            pos: 0,
            state: State::Head,
            token,
            soap,
        }
    }

    fn entry(&self) -> String {
        const CHALLENGE: &str = r#"Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", trusted_issuers=\"00000001-0000-0000-c000-000000000000@f31f3647-5d87-4b69-a0b6-73f62aeab14c\", token_types=\"app_asserted_user_v1 service_asserted_app_v1\", authorization_uri=\"https://login.windows.net/common/oauth2/authorize\""#;
        let i = self.index;
        let t = "2023-11-14T22:13:20.000Z";
        let (req_auth, status, resp_headers, body) = match i % 10 {
            0 => (
                "Bearer".to_owned(),
                401,
                format!(r#"{{"name":"WWW-Authenticate","value":"{CHALLENGE}"}}"#),
                String::new(),
            ),
            9 => (
                format!("Bearer {}", self.token),
                401,
                format!(
                    r#"{{"name":"WWW-Authenticate","value":"{CHALLENGE}, error=\"invalid_token\""}},{{"name":"x-ms-diagnostics","value":"2000003;reason=\"The hostname component of the audience claim value is invalid. Expected 'https://mail.contoso.com'. Actual 'http://mail.contoso.com'.\";error_category=\"invalid_resource\""}}"#
                ),
                String::new(),
            ),
            _ => (
                format!("Bearer {}", self.token),
                200,
                r#"{"name":"Content-Type","value":"text/xml; charset=utf-8"}"#.to_owned(),
                self.soap.clone(),
            ),
        };
        format!(
            r#"{{"startedDateTime":"{t}","time":31.2,"request":{{"method":"POST","url":"https://mail.contoso.com/EWS/Exchange.asmx","httpVersion":"HTTP/1.1","headers":[{{"name":"Host","value":"mail.contoso.com"}},{{"name":"Authorization","value":"{req_auth}"}},{{"name":"X-AnchorMailbox","value":"user{i}@contoso.com"}},{{"name":"Cookie","value":"X-BackEndCookie=secret{i}"}}],"cookies":[],"queryString":[],"postData":{{"mimeType":"text/xml","text":"<soap:Envelope><soap:Body><m:FindItem/></soap:Body></soap:Envelope>"}},"headersSize":-1,"bodySize":-1}},"response":{{"status":{status},"statusText":"","httpVersion":"HTTP/1.1","headers":[{resp_headers},{{"name":"request-id","value":"5fdfec03-2389-42b9-bab9-c787a49d09ca"}}],"cookies":[],"content":{{"size":{},"mimeType":"text/xml","text":"{body}"}},"redirectURL":"","headersSize":-1,"bodySize":-1}},"cache":{{}},"timings":{{"send":0,"wait":30,"receive":1}}}}"#,
            body.len()
        )
    }

    fn refill(&mut self) {
        self.buf.clear();
        self.pos = 0;
        match self.state {
            State::Head => {
                self.buf.extend_from_slice(
                    br#"{"log":{"version":"1.2","creator":{"name":"exgate-bench","version":"1"},"pages":[],"entries":["#,
                );
                self.state = State::Entries;
            }
            State::Entries => {
                if self.index > 0 {
                    self.buf.push(b',');
                }
                let e = self.entry();
                self.buf.extend_from_slice(e.as_bytes());
                self.index += 1;
                if self.produced + self.buf.len() as u64 >= self.target_bytes {
                    self.state = State::Tail;
                }
            }
            State::Tail => {
                self.buf.extend_from_slice(b"]}}");
                self.state = State::Done;
            }
            State::Done => {}
        }
    }

    /// Entries generated so far.
    #[allow(dead_code)]
    pub(crate) fn entries(&self) -> u64 {
        self.index
    }
}

impl Read for GeneratedHar {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            if self.state == State::Done {
                return Ok(0);
            }
            self.refill();
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.produced += n as u64;
        Ok(n)
    }
}
