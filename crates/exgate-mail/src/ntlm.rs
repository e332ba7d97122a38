//! NTLMv2 over HTTP ([MS-NLMP]), the client half: on-premises Exchange's Windows authentication
//! for EWS and Autodiscover when Basic is off (the IIS default is `Ntlm, Negotiate`).
//!
//! NTLM authenticates a connection, not a request: the NEGOTIATE message, the server's CHALLENGE
//! (in a 401) and the AUTHENTICATE message travel over one keep-alive connection, which then stays
//! authenticated. [`crate::HttpClient`] keeps such connections in slots of their own (see
//! `http.rs`); this module only builds and reads the three messages.
//!
//! Only NTLMv2 is produced (no LM or NTLMv1 responses), with a MIC when the server sends a
//! timestamp, as Windows clients do. Written here rather than taken from `ntlmclient` (0.2): that
//! crate keeps the password in a plain `String`, sends no MIC and brings `chrono`, `des` and a
//! second `rand`; the client half is a hundred lines over `md4`, `md-5` and `hmac`.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use md4::{Digest, Md4};
use md5::Md5;
use secrecy::{ExposeSecret, SecretString};

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
const REQUEST_TARGET: u32 = 0x0000_0004;
const NEGOTIATE_NTLM: u32 = 0x0000_0200;
const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
const NEGOTIATE_128: u32 = 0x2000_0000;
const NEGOTIATE_56: u32 = 0x8000_0000;

/// The flags this client asks for (and accepts from the server's choice).
const CLIENT_FLAGS: u32 = NEGOTIATE_UNICODE
    | REQUEST_TARGET
    | NEGOTIATE_NTLM
    | NEGOTIATE_ALWAYS_SIGN
    | NEGOTIATE_EXTENDED_SESSIONSECURITY
    | NEGOTIATE_TARGET_INFO
    | NEGOTIATE_128
    | NEGOTIATE_56;

const AV_EOL: u16 = 0;
const AV_FLAGS: u16 = 6;
const AV_TIMESTAMP: u16 = 7;
/// `MsvAvFlags` bit: the AUTHENTICATE message carries a MIC.
const AV_FLAG_MIC: u32 = 0x2;

/// Offset of the MIC in the AUTHENTICATE message (after the version field).
const MIC_OFFSET: usize = 72;
const AUTHENTICATE_HEADER: usize = 88;

/// An account for NTLM: `DOMAIN\user`, `user@domain` (sent as the user name with an empty
/// domain, which Windows accepts) or a bare `user`. The password never appears in `Debug`.
#[derive(Clone)]
pub struct NtlmCredentials {
    domain: String,
    user: String,
    password: SecretString,
}

impl fmt::Debug for NtlmCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NtlmCredentials")
            .field("domain", &self.domain)
            .field("user", &self.user)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

impl NtlmCredentials {
    /// Credentials for `account` (`DOMAIN\user`, `user@domain` or `user`).
    pub fn new(account: &str, password: SecretString) -> Self {
        let account = account.trim();
        let (domain, user) = match account.split_once('\\') {
            Some((d, u)) => (d.to_owned(), u.to_owned()),
            None => (String::new(), account.to_owned()),
        };
        NtlmCredentials {
            domain,
            user,
            password,
        }
    }

    /// The account as written in evidence (`DOMAIN\user` or the UPN), never the password.
    pub fn account(&self) -> String {
        if self.domain.is_empty() {
            self.user.clone()
        } else {
            format!("{}\\{}", self.domain, self.user)
        }
    }
}

/// The AUTHENTICATE_MESSAGE answering a CHALLENGE_MESSAGE given in base64 (as the line
/// protocols carry it: SMTP `334 <b64>`, IMAP and POP `+ <b64>`), after `negotiate`; `None`
/// when the text is not a challenge.
pub(crate) fn answer_challenge(
    creds: &NtlmCredentials,
    negotiate: &[u8],
    challenge_b64: &str,
) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(challenge_b64.trim())
        .ok()?;
    let challenge = parse_challenge(&bytes)?;
    Some(authenticate_message(
        creds,
        negotiate,
        &bytes,
        &challenge,
        client_challenge(),
        file_time_now(),
    ))
}

/// A NEGOTIATE_MESSAGE (type 1): the flags, no domain or workstation.
pub(crate) fn negotiate_message() -> Vec<u8> {
    let mut m = Vec::with_capacity(32);
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&CLIENT_FLAGS.to_le_bytes());
    m.extend_from_slice(&[0; 16]); // domain and workstation: empty security buffers
    m
}

/// What the client needs from a CHALLENGE_MESSAGE (type 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub flags: u32,
    pub server_challenge: [u8; 8],
    pub target_info: Vec<u8>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads a CHALLENGE_MESSAGE; `None` when it is not one (every offset is bounds-checked).
pub(crate) fn parse_challenge(b: &[u8]) -> Option<Challenge> {
    if b.get(..8)? != SIGNATURE || u32_at(b, 8)? != 2 {
        return None;
    }
    let flags = u32_at(b, 20)?;
    let server_challenge: [u8; 8] = b.get(24..32)?.try_into().ok()?;
    let target_info = if flags & NEGOTIATE_TARGET_INFO != 0 && b.len() >= 48 {
        let len = usize::from(u16_at(b, 40)?);
        let offset = usize::try_from(u32_at(b, 44)?).ok()?;
        b.get(offset..offset.checked_add(len)?)?.to_vec()
    } else {
        Vec::new()
    };
    Some(Challenge {
        flags,
        server_challenge,
        target_info,
    })
}

/// The AV pairs of a TargetInfo as (id, value), stopping at `MsvAvEOL` or at the first
/// malformed pair.
fn av_pairs(info: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while let (Some(id), Some(len)) = (u16_at(info, at), u16_at(info, at + 2)) {
        if id == AV_EOL {
            break;
        }
        let Some(value) = info.get(at + 4..at + 4 + usize::from(len)) else {
            break;
        };
        out.push((id, value));
        at += 4 + usize::from(len);
    }
    out
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = <Hmac<Md5> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// NTOWFv2: HMAC-MD5 over the upper-cased user and the domain, keyed by the MD4 of the password.
pub(crate) fn ntowf_v2(creds: &NtlmCredentials) -> [u8; 16] {
    let nt_hash: [u8; 16] = Md4::digest(utf16le(creds.password.expose_secret())).into();
    let identity = utf16le(&format!("{}{}", creds.user.to_uppercase(), creds.domain));
    hmac_md5(&nt_hash, &[&identity])
}

/// Builds the AUTHENTICATE_MESSAGE (type 3) answering `challenge_bytes` (the whole type 2, for
/// the MIC), with `client_challenge` and, when the server sent none, `now` as the timestamp
/// (100 ns intervals since 1601).
pub(crate) fn authenticate_message(
    creds: &NtlmCredentials,
    negotiate: &[u8],
    challenge_bytes: &[u8],
    challenge: &Challenge,
    client_challenge: [u8; 8],
    now: u64,
) -> Vec<u8> {
    let pairs = av_pairs(&challenge.target_info);
    let server_time = pairs
        .iter()
        .find(|(id, v)| *id == AV_TIMESTAMP && v.len() == 8)
        .and_then(|(_, v)| <[u8; 8]>::try_from(*v).ok());
    let with_mic = server_time.is_some();
    let timestamp = server_time.unwrap_or(now.to_le_bytes());

    // The TargetInfo sent back: the server's pairs, with MsvAvFlags saying a MIC is present.
    let mut info = Vec::with_capacity(challenge.target_info.len() + 12);
    let mut flags_value = if with_mic { AV_FLAG_MIC } else { 0 };
    for (id, value) in &pairs {
        if *id == AV_FLAGS {
            flags_value |= u32_at(value, 0).unwrap_or(0);
            continue;
        }
        info.extend_from_slice(&id.to_le_bytes());
        info.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_le_bytes());
        info.extend_from_slice(value);
    }
    if flags_value != 0 {
        info.extend_from_slice(&AV_FLAGS.to_le_bytes());
        info.extend_from_slice(&4u16.to_le_bytes());
        info.extend_from_slice(&flags_value.to_le_bytes());
    }
    info.extend_from_slice(&[0; 4]); // MsvAvEOL

    let ntowf = ntowf_v2(creds);
    let mut temp = Vec::with_capacity(28 + info.len() + 4);
    temp.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
    temp.extend_from_slice(&timestamp);
    temp.extend_from_slice(&client_challenge);
    temp.extend_from_slice(&[0; 4]);
    temp.extend_from_slice(&info);
    temp.extend_from_slice(&[0; 4]);
    let nt_proof = hmac_md5(&ntowf, &[&challenge.server_challenge, &temp]);
    let mut nt_response = nt_proof.to_vec();
    nt_response.extend_from_slice(&temp);
    let lm_response = if with_mic {
        vec![0; 24]
    } else {
        let mut lm = hmac_md5(&ntowf, &[&challenge.server_challenge, &client_challenge]).to_vec();
        lm.extend_from_slice(&client_challenge);
        lm
    };
    // Without key exchange the exported session key is the session base key.
    let session_key = hmac_md5(&ntowf, &[&nt_proof]);

    let flags = (challenge.flags & CLIENT_FLAGS) | NEGOTIATE_UNICODE | NEGOTIATE_NTLM;
    let domain = utf16le(&creds.domain);
    let user = utf16le(&creds.user);
    let workstation: Vec<u8> = Vec::new();
    let fields: [&[u8]; 5] = [&lm_response, &nt_response, &domain, &user, &workstation];
    let mut m =
        Vec::with_capacity(AUTHENTICATE_HEADER + fields.iter().map(|f| f.len()).sum::<usize>());
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&3u32.to_le_bytes());
    let mut offset = AUTHENTICATE_HEADER;
    let mut buffer = |m: &mut Vec<u8>, len: usize| {
        let len16 = u16::try_from(len).unwrap_or(u16::MAX);
        m.extend_from_slice(&len16.to_le_bytes());
        m.extend_from_slice(&len16.to_le_bytes());
        m.extend_from_slice(&u32::try_from(offset).unwrap_or(u32::MAX).to_le_bytes());
        offset += len;
    };
    for f in &fields {
        buffer(&mut m, f.len());
    }
    buffer(&mut m, 0); // EncryptedRandomSessionKey: none (no key exchange)
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&[0; 8]); // version
    m.extend_from_slice(&[0; 16]); // MIC, filled below
    for f in &fields {
        m.extend_from_slice(f);
    }
    if with_mic {
        let mic = hmac_md5(&session_key, &[negotiate, challenge_bytes, &m]);
        m[MIC_OFFSET..MIC_OFFSET + 16].copy_from_slice(&mic);
    }
    m
}

/// Windows file time now: 100 ns intervals since 1601-01-01.
pub(crate) fn file_time_now() -> u64 {
    const EPOCH_DIFF_SECS: u64 = 11_644_473_600;
    let since_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (since_unix.as_secs() + EPOCH_DIFF_SECS) * 10_000_000
        + u64::from(since_unix.subsec_nanos() / 100)
}

/// A random client challenge.
pub(crate) fn client_challenge() -> [u8; 8] {
    let mut c = [0u8; 8];
    if getrandom::fill(&mut c).is_err() {
        // No OS randomness: fall back to a time-derived value (a nonce, not a key).
        c = file_time_now().to_le_bytes();
    }
    c
}

/// The NTLM token of a `WWW-Authenticate` value (`NTLM <base64>`), if it is one.
pub(crate) fn challenge_token(header: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("ntlm") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn spec_creds() -> NtlmCredentials {
        NtlmCredentials::new("Domain\\User", SecretString::from("Password"))
    }

    /// [MS-NLMP] 4.2.4: the NTLMv2 example (user "User", domain "Domain", password "Password").
    #[test]
    fn ntlmv2_matches_the_specification_example() {
        assert_eq!(
            ntowf_v2(&spec_creds()).to_vec(),
            hex("0c868a403bfd7a93a3001ef22ef02e3f")
        );
        // TargetInfo of the example: MsvAvNbDomainName "Domain", MsvAvNbComputerName "Server".
        let mut info = Vec::new();
        for (id, name) in [(2u16, "Domain"), (1u16, "Server")] {
            let v = utf16le(name);
            info.extend_from_slice(&id.to_le_bytes());
            info.extend_from_slice(&(v.len() as u16).to_le_bytes());
            info.extend_from_slice(&v);
        }
        info.extend_from_slice(&[0; 4]);
        let challenge = Challenge {
            flags: 0xe28a_8233,
            server_challenge: hex("0123456789abcdef").try_into().unwrap(),
            target_info: info,
        };
        let m = authenticate_message(
            &spec_creds(),
            &negotiate_message(),
            &[],
            &challenge,
            [0xaa; 8],
            0,
        );
        // The NtChallengeResponse starts with NTProofStr.
        let nt_len = usize::from(u16_at(&m, 20).unwrap());
        let nt_off = usize::try_from(u32_at(&m, 24).unwrap()).unwrap();
        assert!(nt_len > 16);
        assert_eq!(
            m[nt_off..nt_off + 16].to_vec(),
            hex("68cd0ab851e51c96aabc927bebef6a1c")
        );
        // LMv2 of the example.
        let lm_off = usize::try_from(u32_at(&m, 16).unwrap()).unwrap();
        assert_eq!(
            m[lm_off..lm_off + 24].to_vec(),
            hex("86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa")
        );
        // No timestamp from the server: no MIC.
        assert_eq!(m[MIC_OFFSET..MIC_OFFSET + 16], [0; 16]);
    }

    #[test]
    fn a_server_timestamp_brings_a_mic_and_the_mic_flag() {
        let mut info = Vec::new();
        info.extend_from_slice(&AV_TIMESTAMP.to_le_bytes());
        info.extend_from_slice(&8u16.to_le_bytes());
        info.extend_from_slice(&1234u64.to_le_bytes());
        info.extend_from_slice(&[0; 4]);
        let challenge = Challenge {
            flags: CLIENT_FLAGS,
            server_challenge: [1; 8],
            target_info: info,
        };
        let m = authenticate_message(
            &spec_creds(),
            &negotiate_message(),
            b"t2",
            &challenge,
            [2; 8],
            99,
        );
        assert_ne!(m[MIC_OFFSET..MIC_OFFSET + 16], [0; 16]);
        let nt_off = usize::try_from(u32_at(&m, 24).unwrap()).unwrap();
        let nt_len = usize::from(u16_at(&m, 20).unwrap());
        let blob = &m[nt_off + 16..nt_off + nt_len];
        // The server's timestamp is used, and MsvAvFlags says a MIC is present.
        assert_eq!(blob[8..16], 1234u64.to_le_bytes());
        let pairs = av_pairs(&blob[28..]);
        assert!(pairs.contains(&(AV_FLAGS, &AV_FLAG_MIC.to_le_bytes()[..])));
        // The LM response is zeroed when a MIC is sent.
        let lm_off = usize::try_from(u32_at(&m, 16).unwrap()).unwrap();
        assert_eq!(m[lm_off..lm_off + 24], [0; 24]);
    }

    #[test]
    fn challenge_round_trip_and_rejections() {
        let mut t2 = Vec::new();
        t2.extend_from_slice(SIGNATURE);
        t2.extend_from_slice(&2u32.to_le_bytes());
        t2.extend_from_slice(&[0; 8]); // target name
        t2.extend_from_slice(&NEGOTIATE_TARGET_INFO.to_le_bytes());
        t2.extend_from_slice(&[9; 8]);
        t2.extend_from_slice(&[0; 8]); // reserved
        t2.extend_from_slice(&4u16.to_le_bytes());
        t2.extend_from_slice(&4u16.to_le_bytes());
        t2.extend_from_slice(&48u32.to_le_bytes());
        t2.extend_from_slice(&[0; 4]);
        let c = parse_challenge(&t2).unwrap();
        assert_eq!(c.server_challenge, [9; 8]);
        assert_eq!(c.target_info, vec![0; 4]);
        assert!(parse_challenge(&t2[..30]).is_none());
        assert!(parse_challenge(&negotiate_message()).is_none());
        let mut bad = t2.clone();
        bad[44] = 0xff; // target info offset past the end
        assert!(parse_challenge(&bad).is_none());
        assert_eq!(challenge_token("NTLM AAEC"), Some(vec![0, 1, 2]));
        assert_eq!(challenge_token("Negotiate AAEC"), None);
        assert_eq!(challenge_token("NTLM"), None);
    }

    #[test]
    fn accounts_split_into_domain_and_user_and_debug_hides_the_password() {
        let c = NtlmCredentials::new("CONTOSO\\svc", SecretString::from("CANARY-ntlm-pw"));
        assert_eq!((c.domain.as_str(), c.user.as_str()), ("CONTOSO", "svc"));
        assert_eq!(c.account(), "CONTOSO\\svc");
        let u = NtlmCredentials::new("svc@contoso.com", SecretString::from("x"));
        assert_eq!(
            (u.domain.as_str(), u.user.as_str()),
            ("", "svc@contoso.com")
        );
        assert!(!format!("{c:?}").contains("CANARY"));
    }

    proptest::proptest! {
        #[test]
        fn challenge_parser_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut input = SIGNATURE.to_vec();
            input.extend_from_slice(&2u32.to_le_bytes());
            input.extend(bytes.iter().copied());
            if let Some(c) = parse_challenge(&input) {
                let _ = authenticate_message(&spec_creds(), &[], &input, &c, [0; 8], 0);
            }
            let _ = parse_challenge(&bytes);
            let _ = av_pairs(&bytes);
        }
    }
}
