//! NTLM (NTLMv2 only) on the server side, from [MS-NLMP]: the three messages, the NTLMv2 proof
//! and MIC checks, and the per-connection handshake state.
//!
//! Written by hand so that the emulator verifies what clients send independently of any client
//! library. NTLMv1 and LM-only responses are refused. Every parser is bounds-checked: hostile
//! input yields `None`, never a panic.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use md4::{Digest, Md4};
use md5::Md5;

use crate::auth::{Principal, Vdir};
use crate::state::Site;

type HmacMd5 = Hmac<Md5>;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// NegotiateFlags ([MS-NLMP] 2.2.2.5).
pub(crate) mod flags {
    pub(crate) const UNICODE: u32 = 0x0000_0001;
    pub(crate) const OEM: u32 = 0x0000_0002;
    pub(crate) const REQUEST_TARGET: u32 = 0x0000_0004;
    pub(crate) const SIGN: u32 = 0x0000_0010;
    pub(crate) const SEAL: u32 = 0x0000_0020;
    pub(crate) const NTLM: u32 = 0x0000_0200;
    pub(crate) const ANONYMOUS: u32 = 0x0000_0800;
    pub(crate) const ALWAYS_SIGN: u32 = 0x0000_8000;
    pub(crate) const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
    pub(crate) const EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
    pub(crate) const TARGET_INFO: u32 = 0x0080_0000;
    pub(crate) const VERSION: u32 = 0x0200_0000;
    pub(crate) const N128: u32 = 0x2000_0000;
    pub(crate) const KEY_EXCH: u32 = 0x4000_0000;
    pub(crate) const N56: u32 = 0x8000_0000;
}

/// AV pair ids ([MS-NLMP] 2.2.2.1).
mod av {
    pub(super) const EOL: u16 = 0;
    pub(super) const NB_COMPUTER_NAME: u16 = 1;
    pub(super) const NB_DOMAIN_NAME: u16 = 2;
    pub(super) const DNS_COMPUTER_NAME: u16 = 3;
    pub(super) const DNS_DOMAIN_NAME: u16 = 4;
    pub(super) const FLAGS: u16 = 6;
    pub(super) const TIMESTAMP: u16 = 7;
}

/// MsvAvFlags bit: the AUTHENTICATE_MESSAGE carries a MIC.
const AV_FLAG_MIC: u32 = 0x0000_0002;

// ---------------------------------------------------------------------------------------------
// Bounds-checked reading.

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// A (Len, MaxLen, Offset) field: the slice it names, which must lie inside the message.
fn field(b: &[u8], at: usize) -> Option<&[u8]> {
    let len = usize::from(u16_at(b, at)?);
    let offset = usize::try_from(u32_at(b, at.checked_add(4)?)?).ok()?;
    b.get(offset..offset.checked_add(len)?)
}

fn header(b: &[u8], kind: u32) -> Option<()> {
    (b.get(..8)? == SIGNATURE && u32_at(b, 8)? == kind).then_some(())
}

/// The message type of an NTLM token (1, 2 or 3), if it looks like one.
pub(crate) fn message_type(b: &[u8]) -> Option<u32> {
    (b.get(..8)? == SIGNATURE).then_some(())?;
    u32_at(b, 8)
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn decode_string(b: &[u8], unicode: bool) -> Option<String> {
    if unicode {
        if !b.len().is_multiple_of(2) {
            return None;
        }
        let units: Vec<u16> = b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units).ok()
    } else {
        // OEM code page: Latin-1 is close enough for the names a scenario holds.
        Some(b.iter().map(|&c| char::from(c)).collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Messages.

/// A parsed NEGOTIATE_MESSAGE (type 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Negotiate {
    pub flags: u32,
}

/// Parses a NEGOTIATE_MESSAGE.
pub(crate) fn parse_negotiate(b: &[u8]) -> Option<Negotiate> {
    header(b, 1)?;
    Some(Negotiate {
        flags: u32_at(b, 12)?,
    })
}

/// The names a server puts in its CHALLENGE_MESSAGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerNames {
    /// NetBIOS domain name, e.g. `CONTOSO` (also the target name).
    pub nb_domain: String,
    /// NetBIOS computer name, e.g. `EX01`.
    pub nb_computer: String,
    /// DNS domain name, e.g. `contoso.com`.
    pub dns_domain: String,
    /// DNS computer name, e.g. `ex01.contoso.com`.
    pub dns_computer: String,
}

/// The flags the server answers with: what the client asked for that the server supports.
pub(crate) fn challenge_flags(client: u32) -> u32 {
    use flags::*;
    let echoed = client
        & (REQUEST_TARGET
            | SIGN
            | SEAL
            | ALWAYS_SIGN
            | EXTENDED_SESSIONSECURITY
            | VERSION
            | N128
            | N56
            | KEY_EXCH);
    let charset = if client & UNICODE != 0 || client & OEM == 0 {
        UNICODE
    } else {
        OEM
    };
    let target = if client & REQUEST_TARGET != 0 {
        TARGET_TYPE_DOMAIN
    } else {
        0
    };
    echoed | charset | target | NTLM | TARGET_INFO
}

fn av_pair(out: &mut Vec<u8>, id: u16, value: &[u8]) {
    out.extend_from_slice(&id.to_le_bytes());
    // Names come from the scenario and are short; a longer value is cut rather than wrapped.
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(value.get(..usize::from(len)).unwrap_or(value));
}

/// The TargetInfo AV pairs of a challenge.
pub(crate) fn target_info(names: &ServerNames, timestamp: u64) -> Vec<u8> {
    let mut t = Vec::new();
    av_pair(&mut t, av::NB_DOMAIN_NAME, &utf16le(&names.nb_domain));
    av_pair(&mut t, av::NB_COMPUTER_NAME, &utf16le(&names.nb_computer));
    av_pair(&mut t, av::DNS_DOMAIN_NAME, &utf16le(&names.dns_domain));
    av_pair(&mut t, av::DNS_COMPUTER_NAME, &utf16le(&names.dns_computer));
    av_pair(&mut t, av::TIMESTAMP, &timestamp.to_le_bytes());
    av_pair(&mut t, av::EOL, &[]);
    t
}

/// Builds a CHALLENGE_MESSAGE (type 2) answering a NEGOTIATE_MESSAGE's flags.
pub(crate) fn challenge_message(
    client_flags: u32,
    server_challenge: [u8; 8],
    names: &ServerNames,
    timestamp: u64,
) -> Vec<u8> {
    let flags = challenge_flags(client_flags);
    let target = if flags & flags::UNICODE != 0 {
        utf16le(&names.nb_domain)
    } else {
        names.nb_domain.bytes().collect()
    };
    let info = target_info(names, timestamp);
    const PAYLOAD: usize = 56;
    let mut m = Vec::with_capacity(PAYLOAD + target.len() + info.len());
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&2u32.to_le_bytes());
    let tlen = u16::try_from(target.len()).unwrap_or(0);
    m.extend_from_slice(&tlen.to_le_bytes());
    m.extend_from_slice(&tlen.to_le_bytes());
    m.extend_from_slice(&(PAYLOAD as u32).to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&server_challenge);
    m.extend_from_slice(&[0; 8]);
    let ilen = u16::try_from(info.len()).unwrap_or(0);
    m.extend_from_slice(&ilen.to_le_bytes());
    m.extend_from_slice(&ilen.to_le_bytes());
    m.extend_from_slice(&((PAYLOAD + usize::from(tlen)) as u32).to_le_bytes());
    // Version: 10.0 build 17763, NTLMSSP_REVISION_W2K3.
    m.extend_from_slice(&[10, 0]);
    m.extend_from_slice(&17763u16.to_le_bytes());
    m.extend_from_slice(&[0, 0, 0, 0x0f]);
    m.extend_from_slice(target.get(..usize::from(tlen)).unwrap_or_default());
    m.extend_from_slice(info.get(..usize::from(ilen)).unwrap_or_default());
    m
}

/// A parsed AUTHENTICATE_MESSAGE (type 3). Holds the client's proof: `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Authenticate {
    pub flags: u32,
    pub user: String,
    pub domain: String,
    pub workstation: String,
    pub lm_response: Vec<u8>,
    pub nt_response: Vec<u8>,
    pub encrypted_session_key: Vec<u8>,
    /// The MIC, when the NTLMv2 response's MsvAvFlags say one is present.
    pub mic: Option<[u8; 16]>,
}

impl std::fmt::Debug for Authenticate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticate")
            .field("flags", &format_args!("{:#010x}", self.flags))
            .field("user", &self.user)
            .field("domain", &self.domain)
            .field("workstation", &self.workstation)
            .field(
                "nt_response",
                &format_args!("[{} bytes]", self.nt_response.len()),
            )
            .field("mic", &self.mic.is_some())
            .finish_non_exhaustive()
    }
}

/// Offset of the MIC in an AUTHENTICATE_MESSAGE (after the Version field).
const MIC_OFFSET: usize = 72;

/// Parses an AUTHENTICATE_MESSAGE.
pub(crate) fn parse_authenticate(b: &[u8]) -> Option<Authenticate> {
    header(b, 3)?;
    let lm = field(b, 12)?;
    let nt = field(b, 20)?;
    let flags = u32_at(b, 60)?;
    let unicode = flags & flags::UNICODE != 0;
    let domain = decode_string(field(b, 28)?, unicode)?;
    let user = decode_string(field(b, 36)?, unicode)?;
    let workstation = decode_string(field(b, 44)?, unicode)?;
    let key = field(b, 52)?;
    let mic = if nt.len() > 24 && mic_flagged(nt) {
        let s = b.get(MIC_OFFSET..MIC_OFFSET + 16)?;
        let mut m = [0u8; 16];
        m.copy_from_slice(s);
        Some(m)
    } else {
        None
    };
    Some(Authenticate {
        flags,
        user,
        domain,
        workstation,
        lm_response: lm.to_vec(),
        nt_response: nt.to_vec(),
        encrypted_session_key: key.to_vec(),
        mic,
    })
}

/// AV pairs of an NTLMv2 response (after NTProofStr and the fixed part of the blob).
fn av_pairs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let id = u16_at(b, 0)?;
        let len = usize::from(u16_at(b, 2)?);
        let value = b.get(4..4 + len)?;
        b = b.get(4 + len..)?;
        (id != av::EOL).then_some((id, value))
    })
}

/// NTProofStr (16) + RespType, HiRespType, 6 reserved, TimeStamp (8), client challenge (8),
/// 4 reserved: the AV pairs start at 44.
const V2_AV_OFFSET: usize = 44;

fn mic_flagged(nt: &[u8]) -> bool {
    let Some(pairs) = nt.get(V2_AV_OFFSET..) else {
        return false;
    };
    av_pairs(pairs)
        .filter(|(id, _)| *id == av::FLAGS)
        .any(|(_, v)| u32_at(v, 0).is_some_and(|f| f & AV_FLAG_MIC != 0))
}

// ---------------------------------------------------------------------------------------------
// Cryptography ([MS-NLMP] 3.3.2).

/// NT hash: MD4(UTF-16LE(password)).
pub(crate) fn nt_hash(password: &str) -> [u8; 16] {
    Md4::digest(utf16le(password)).into()
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // HMAC accepts keys of any length.
    let mut mac = match <HmacMd5 as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 16],
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// NTOWFv2: HMAC_MD5(NT hash, UTF-16LE(UPPERCASE(user) + domain)).
pub(crate) fn ntowf_v2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    let who = utf16le(&format!("{}{domain}", user.to_uppercase()));
    hmac_md5(&nt_hash(password), &[&who])
}

/// RC4, for NEGOTIATE_KEY_EXCH: decrypting the 16-byte EncryptedRandomSessionKey. Written out
/// (it is a dozen lines) rather than pulling a cipher-trait stack for one 16-byte decryption.
pub(crate) fn rc4(key: &[u8], data: &[u8]) -> Vec<u8> {
    if key.is_empty() {
        return data.to_vec();
    }
    let mut s: [u8; 256] = std::array::from_fn(|i| i as u8);
    let mut j: u8 = 0;
    for i in 0..256 {
        j = j
            .wrapping_add(s[i])
            .wrapping_add(key.get(i % key.len()).copied().unwrap_or(0));
        s.swap(i, usize::from(j));
    }
    let (mut i, mut j) = (0u8, 0u8);
    data.iter()
        .map(|b| {
            i = i.wrapping_add(1);
            j = j.wrapping_add(s[usize::from(i)]);
            s.swap(usize::from(i), usize::from(j));
            let k = s[usize::from(s[usize::from(i)].wrapping_add(s[usize::from(j)]))];
            b ^ k
        })
        .collect()
}

/// Why an AUTHENTICATE_MESSAGE was refused (never carries secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// NTLMv1, LM-only or anonymous.
    NotV2,
    /// NTProofStr does not match: wrong password or wrong user.
    BadProof,
    /// The MIC does not match.
    BadMic,
}

/// Checks an NTLMv2 AUTHENTICATE_MESSAGE against the password: NTProofStr, then the MIC when
/// present. `messages` are the raw NEGOTIATE, CHALLENGE and AUTHENTICATE messages.
pub(crate) fn verify(
    msg: &Authenticate,
    password: &str,
    server_challenge: &[u8; 8],
    messages: [&[u8]; 3],
) -> Result<(), Refusal> {
    let nt = &msg.nt_response;
    if nt.len() < V2_AV_OFFSET || msg.flags & flags::ANONYMOUS != 0 || msg.user.is_empty() {
        return Err(Refusal::NotV2);
    }
    let (proof, temp) = nt.split_at(16);
    // RespType and HiRespType are 1 in every NTLMv2 client challenge.
    if temp.first() != Some(&1) {
        return Err(Refusal::NotV2);
    }
    let key = ntowf_v2(password, &msg.user, &msg.domain);
    let mut mac = <HmacMd5 as KeyInit>::new_from_slice(&key).map_err(|_| Refusal::BadProof)?;
    mac.update(server_challenge);
    mac.update(temp);
    mac.verify_slice(proof).map_err(|_| Refusal::BadProof)?;
    if let Some(mic) = msg.mic {
        let session_base_key = hmac_md5(&key, &[proof]);
        // [MS-NLMP] 3.2.5.1.2: the client's random key is used only with KEY_EXCH and SIGN or
        // SEAL; otherwise the exported key is the key exchange key (pyspnego sends a
        // placeholder EncryptedRandomSessionKey then).
        let key_exch =
            msg.flags & flags::KEY_EXCH != 0 && msg.flags & (flags::SIGN | flags::SEAL) != 0;
        let exported = if key_exch {
            if msg.encrypted_session_key.len() != 16 {
                return Err(Refusal::BadMic);
            }
            rc4(&session_base_key, &msg.encrypted_session_key)
        } else {
            session_base_key.to_vec()
        };
        let [negotiate, challenge, authenticate] = messages;
        let mut zeroed = authenticate.to_vec();
        match zeroed.get_mut(MIC_OFFSET..MIC_OFFSET + 16) {
            Some(s) => s.fill(0),
            None => return Err(Refusal::BadMic),
        }
        let mut mac =
            <HmacMd5 as KeyInit>::new_from_slice(&exported).map_err(|_| Refusal::BadMic)?;
        mac.update(negotiate);
        mac.update(challenge);
        mac.update(&zeroed);
        mac.verify_slice(&mic).map_err(|_| Refusal::BadMic)?;
    }
    Ok(())
}

/// Windows FILETIME now: 100 ns intervals since 1601-01-01.
pub(crate) fn filetime_now() -> u64 {
    const EPOCH_DIFF: u64 = 11_644_473_600;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_secs() + EPOCH_DIFF) * 10_000_000 + u64::from(now.subsec_nanos() / 100)
}

/// A fresh random server challenge.
pub(crate) fn server_challenge() -> [u8; 8] {
    let mut c = [0u8; 8];
    if getrandom::fill(&mut c).is_err() {
        // No OS randomness: fall back on a v4 UUID's bytes (itself OS-random when available).
        let u = uuid::Uuid::new_v4();
        c.copy_from_slice(u.as_bytes().get(..8).unwrap_or(&[0; 8]));
    }
    c
}

// ---------------------------------------------------------------------------------------------
// Per-connection state.

/// How long a challenge stays answerable.
const CHALLENGE_TTL: Duration = Duration::from_secs(300);
/// At most this many connections are remembered; the oldest are dropped beyond it.
pub(crate) const MAX_CONNECTIONS: usize = 4096;

/// Where a connection is in the handshake.
#[derive(Clone)]
pub(crate) enum ConnState {
    /// A CHALLENGE_MESSAGE was sent; the AUTHENTICATE_MESSAGE is expected next.
    Challenged {
        site: Site,
        vdir: Vdir,
        negotiate: Vec<u8>,
        challenge: Vec<u8>,
        server_challenge: [u8; 8],
        at: Instant,
    },
    /// The connection is authenticated as this user, on this site.
    Authenticated { site: Site, principal: Principal },
}

impl std::fmt::Debug for ConnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnState::Challenged { site, vdir, .. } => write!(f, "Challenged({site:?}, {vdir:?})"),
            ConnState::Authenticated { site, principal } => {
                write!(f, "Authenticated({site:?}, {})", principal.budget_key())
            }
        }
    }
}

/// NTLM state by connection id, bounded by [`MAX_CONNECTIONS`].
#[derive(Debug, Default)]
pub(crate) struct Connections {
    map: Mutex<HashMap<u64, ConnState>>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, ConnState>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a connection's state, dropping the oldest connections (ids grow) when full.
    pub(crate) fn set(&self, id: u64, state: ConnState) {
        let mut m = self.lock();
        if m.len() >= MAX_CONNECTIONS && !m.contains_key(&id) {
            let mut ids: Vec<u64> = m.keys().copied().collect();
            ids.sort_unstable();
            for old in ids.iter().take(MAX_CONNECTIONS / 4 + 1) {
                m.remove(old);
            }
        }
        m.insert(id, state);
    }

    /// Takes a pending challenge of a connection (it can be answered once).
    pub(crate) fn take_challenge(&self, id: u64) -> Option<ConnState> {
        let mut m = self.lock();
        match m.get(&id) {
            Some(ConnState::Challenged { at, .. }) if at.elapsed() <= CHALLENGE_TTL => {
                m.remove(&id)
            }
            Some(ConnState::Challenged { .. }) => {
                m.remove(&id);
                None
            }
            _ => None,
        }
    }

    /// The user a connection is authenticated as on `site`, if any.
    pub(crate) fn authenticated(&self, id: u64, site: Site) -> Option<Principal> {
        match self.lock().get(&id) {
            Some(ConnState::Authenticated { site: s, principal }) if *s == site => {
                Some(principal.clone())
            }
            _ => None,
        }
    }

    /// Forgets a connection.
    pub(crate) fn forget(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Number of connections remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// [MS-NLMP] 4.2.4.1.3: temp with the spec's TargetInfo (NbDomainName "Domain",
    /// NbComputerName "Server"), time 0, client challenge aa..aa.
    fn spec_temp() -> Vec<u8> {
        let mut t = vec![1, 1, 0, 0, 0, 0, 0, 0];
        t.extend_from_slice(&[0; 8]);
        t.extend_from_slice(&[0xaa; 8]);
        t.extend_from_slice(&[0; 4]);
        av_pair(&mut t, av::NB_DOMAIN_NAME, &utf16le("Domain"));
        av_pair(&mut t, av::NB_COMPUTER_NAME, &utf16le("Server"));
        av_pair(&mut t, av::EOL, &[]);
        t.extend_from_slice(&[0; 4]);
        t
    }

    const SERVER_CHALLENGE: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];

    #[test]
    fn ms_nlmp_4_2_4_ntowfv2() {
        assert_eq!(
            ntowf_v2("Password", "User", "Domain").to_vec(),
            hex("0c868a403bfd7a93a3001ef22ef02e3f")
        );
        assert_eq!(
            nt_hash("Password").to_vec(),
            hex("a4f49c406510bdcab6824ee7c30fd852")
        );
    }

    #[test]
    fn ms_nlmp_4_2_4_temp_matches_the_spec_bytes() {
        let spec = [
            "0101000000000000",
            "0000000000000000",
            "aaaaaaaaaaaaaaaa",
            "00000000",
            "02000c00",
            "44006f006d00610069006e00",
            "01000c00",
            "530065007200760065007200",
            "00000000",
            "00000000",
        ]
        .concat();
        assert_eq!(spec_temp(), hex(&spec));
    }

    #[test]
    fn ms_nlmp_4_2_4_proof_session_key_and_key_exchange() {
        let key = ntowf_v2("Password", "User", "Domain");
        let temp = spec_temp();
        let proof = hmac_md5(&key, &[&SERVER_CHALLENGE, &temp]);
        assert_eq!(proof.to_vec(), hex("68cd0ab851e51c96aabc927bebef6a1c"));
        let base = hmac_md5(&key, &[&proof]);
        assert_eq!(base.to_vec(), hex("8de40ccadbc14a82f15cb0ad0de95ca3"));
        // 4.2.4.2.3: RandomSessionKey 55..55 encrypted with the KeyExchangeKey.
        assert_eq!(
            rc4(&base, &[0x55; 16]),
            hex("c5dad2544fc9799094ce1ce90bc9d03e")
        );
    }

    /// Builds an AUTHENTICATE_MESSAGE (Unicode, with the version field and, optionally, a MIC).
    pub(crate) fn authenticate_message(
        user: &str,
        domain: &str,
        nt: &[u8],
        key: &[u8],
        flags: u32,
    ) -> Vec<u8> {
        let d = utf16le(domain);
        let u = utf16le(user);
        let w = utf16le("WS");
        let mut payload = Vec::new();
        let mut fields = Vec::new();
        let base = 88usize;
        for part in [&[][..], nt, &d, &u, &w, key] {
            let off = base + payload.len();
            fields.extend_from_slice(&(part.len() as u16).to_le_bytes());
            fields.extend_from_slice(&(part.len() as u16).to_le_bytes());
            fields.extend_from_slice(&(off as u32).to_le_bytes());
            payload.extend_from_slice(part);
        }
        let mut m = SIGNATURE.to_vec();
        m.extend_from_slice(&3u32.to_le_bytes());
        m.extend_from_slice(&fields);
        m.extend_from_slice(&flags.to_le_bytes());
        m.extend_from_slice(&[10, 0, 0x63, 0x45, 0, 0, 0, 0x0f]);
        m.extend_from_slice(&[0; 16]);
        m.extend_from_slice(&payload);
        m
    }

    #[test]
    fn spec_response_verifies_and_a_wrong_password_does_not() {
        let key = ntowf_v2("Password", "User", "Domain");
        let temp = spec_temp();
        let proof = hmac_md5(&key, &[&SERVER_CHALLENGE, &temp]);
        let mut nt = proof.to_vec();
        nt.extend_from_slice(&temp);
        let flags = flags::UNICODE | flags::NTLM | flags::EXTENDED_SESSIONSECURITY;
        let raw = authenticate_message("User", "Domain", &nt, &[], flags);
        let msg = parse_authenticate(&raw).expect("parses");
        assert_eq!((msg.user.as_str(), msg.domain.as_str()), ("User", "Domain"));
        assert_eq!(msg.mic, None);
        let none: [&[u8]; 3] = [&[], &[], &raw];
        assert_eq!(verify(&msg, "Password", &SERVER_CHALLENGE, none), Ok(()));
        assert_eq!(
            verify(&msg, "password", &SERVER_CHALLENGE, none),
            Err(Refusal::BadProof)
        );
        assert_eq!(
            verify(&msg, "Password", &[0; 8], none),
            Err(Refusal::BadProof)
        );
        let debug = format!("{msg:?}");
        assert!(
            !debug.contains("104, 205") && debug.contains("bytes"),
            "{debug}"
        );
    }

    #[test]
    fn mic_with_key_exchange_is_checked() {
        let negotiate = b"NTLMSSP\0\x01\0\0\0\x35\x82\x08\x60".to_vec();
        let names = ServerNames {
            nb_domain: "DOMAIN".into(),
            nb_computer: "SERVER".into(),
            dns_domain: "domain.test".into(),
            dns_computer: "server.domain.test".into(),
        };
        let challenge = challenge_message(0x6008_8235, SERVER_CHALLENGE, &names, 1);
        let key = ntowf_v2("Password", "User", "Domain");
        let mut temp = vec![1, 1, 0, 0, 0, 0, 0, 0];
        temp.extend_from_slice(&[0; 8]);
        temp.extend_from_slice(&[0xaa; 8]);
        temp.extend_from_slice(&[0; 4]);
        av_pair(&mut temp, av::FLAGS, &AV_FLAG_MIC.to_le_bytes());
        av_pair(&mut temp, av::EOL, &[]);
        let proof = hmac_md5(&key, &[&SERVER_CHALLENGE, &temp]);
        let mut nt = proof.to_vec();
        nt.extend_from_slice(&temp);
        let base = hmac_md5(&key, &[&proof]);
        let exported = [0x55u8; 16];
        let enc = rc4(&base, &exported);
        let flags = challenge_flags(0x6008_8235) | flags::KEY_EXCH;
        let mut raw = authenticate_message("User", "Domain", &nt, &enc, flags);
        let mic = hmac_md5(&exported, &[&negotiate, &challenge, &raw]);
        raw[MIC_OFFSET..MIC_OFFSET + 16].copy_from_slice(&mic);
        let msg = parse_authenticate(&raw).expect("parses");
        assert_eq!(msg.mic, Some(mic));
        assert_eq!(
            verify(
                &msg,
                "Password",
                &SERVER_CHALLENGE,
                [&negotiate, &challenge, &raw]
            ),
            Ok(())
        );
        // A tampered challenge (or negotiate) breaks the MIC.
        let mut other = challenge.clone();
        other[20] ^= 1;
        assert_eq!(
            verify(
                &msg,
                "Password",
                &SERVER_CHALLENGE,
                [&negotiate, &other, &raw]
            ),
            Err(Refusal::BadMic)
        );
    }

    #[test]
    fn key_exch_without_sign_or_seal_uses_the_session_base_key() {
        let negotiate = b"NTLMSSP\0\x01\0\0\0\x01\x82\x08\x40".to_vec();
        let key = ntowf_v2("Password", "User", "Domain");
        let mut temp = vec![1, 1, 0, 0, 0, 0, 0, 0];
        temp.extend_from_slice(&[0; 20]);
        av_pair(&mut temp, av::FLAGS, &AV_FLAG_MIC.to_le_bytes());
        av_pair(&mut temp, av::EOL, &[]);
        let proof = hmac_md5(&key, &[&SERVER_CHALLENGE, &temp]);
        let mut nt = proof.to_vec();
        nt.extend_from_slice(&temp);
        let base = hmac_md5(&key, &[&proof]);
        let flags =
            flags::UNICODE | flags::NTLM | flags::EXTENDED_SESSIONSECURITY | flags::KEY_EXCH;
        let mut raw = authenticate_message("User", "Domain", &nt, &[0], flags);
        let mic = hmac_md5(&base, &[&negotiate, b"challenge", &raw]);
        raw[MIC_OFFSET..MIC_OFFSET + 16].copy_from_slice(&mic);
        let msg = parse_authenticate(&raw).expect("parses");
        assert_eq!(
            verify(
                &msg,
                "Password",
                &SERVER_CHALLENGE,
                [&negotiate, b"challenge", &raw]
            ),
            Ok(())
        );
    }

    #[test]
    fn ntlmv1_and_lm_only_are_refused() {
        let flags = flags::UNICODE | flags::NTLM;
        for nt in [vec![], vec![7u8; 24]] {
            let raw = authenticate_message("User", "Domain", &nt, &[], flags);
            let msg = parse_authenticate(&raw).expect("parses");
            assert_eq!(
                verify(&msg, "Password", &SERVER_CHALLENGE, [&[], &[], &raw]),
                Err(Refusal::NotV2)
            );
        }
    }

    #[test]
    fn challenge_message_round_trips_its_fields() {
        let names = ServerNames {
            nb_domain: "CONTOSO".into(),
            nb_computer: "EX01".into(),
            dns_domain: "contoso.com".into(),
            dns_computer: "ex01.contoso.com".into(),
        };
        let m = challenge_message(0xe208_8297, SERVER_CHALLENGE, &names, 42);
        assert_eq!(message_type(&m), Some(2));
        let f = u32_at(&m, 20).expect("flags");
        for want in [
            flags::UNICODE,
            flags::NTLM,
            flags::TARGET_INFO,
            flags::KEY_EXCH,
            flags::N128,
            flags::N56,
            flags::EXTENDED_SESSIONSECURITY,
            flags::VERSION,
            flags::TARGET_TYPE_DOMAIN,
        ] {
            assert_ne!(f & want, 0, "{want:#x}");
        }
        assert_eq!(field(&m, 12), Some(&utf16le("CONTOSO")[..]));
        assert_eq!(m.get(24..32), Some(&SERVER_CHALLENGE[..]));
        let info = field(&m, 40).expect("target info");
        let pairs: Vec<(u16, Vec<u8>)> = av_pairs(info).map(|(i, v)| (i, v.to_vec())).collect();
        assert_eq!(pairs.len(), 5);
        assert!(pairs.contains(&(av::TIMESTAMP, 42u64.to_le_bytes().to_vec())));
        assert!(pairs.contains(&(av::DNS_COMPUTER_NAME, utf16le("ex01.contoso.com"))));
        assert_eq!(info.get(info.len() - 4..), Some(&[0u8, 0, 0, 0][..]));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = message_type(&b);
            let _ = parse_negotiate(&b);
            if let Some(m) = parse_authenticate(&b) {
                let _ = verify(&m, "Password", &SERVER_CHALLENGE, [&[], &[], &b]);
            }
        }

        #[test]
        fn arbitrary_authenticate_bodies_never_panic(
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            nt in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            flags in proptest::prelude::any::<u32>(),
        ) {
            // Well-formed header and fields around arbitrary NTLMv2 blobs, and arbitrary
            // bytes after a valid signature.
            let raw = authenticate_message("User", "Domain", &nt, &tail, flags);
            if let Some(m) = parse_authenticate(&raw) {
                let _ = verify(&m, "Password", &SERVER_CHALLENGE, [&[], &tail, &raw]);
            }
            let mut hostile = SIGNATURE.to_vec();
            hostile.extend_from_slice(&3u32.to_le_bytes());
            hostile.extend_from_slice(&tail);
            if let Some(m) = parse_authenticate(&hostile) {
                let _ = verify(&m, "Password", &SERVER_CHALLENGE, [&[], &[], &hostile]);
            }
        }
    }

    #[test]
    fn connection_state_is_bounded() {
        let c = Connections::default();
        for id in 0..(MAX_CONNECTIONS as u64 * 2) {
            c.set(
                id,
                ConnState::Authenticated {
                    site: Site::Online,
                    principal: Principal::User {
                        upn: "u@x".into(),
                        tenant_id: "t".into(),
                        app_id: None,
                        scopes: Vec::new(),
                    },
                },
            );
        }
        assert!(c.len() <= MAX_CONNECTIONS);
        assert!(
            c.authenticated(MAX_CONNECTIONS as u64 * 2 - 1, Site::Online)
                .is_some()
        );
        assert!(c.authenticated(0, Site::Online).is_none());
    }
}
