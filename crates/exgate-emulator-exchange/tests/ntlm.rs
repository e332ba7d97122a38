//! NTLM (NTLMv2) on on-premises EWS, through the router with connection ids: the handshake, the
//! per-connection authentication IIS keeps, and every refusal.
//!
//! The client side here is written from [MS-NLMP] independently of the server's code: it sends
//! NEGOTIATE_KEY_EXCH and a MIC, as pyspnego does.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use exgate_emulator_exchange::ConnectionId;
use hmac::{Hmac, KeyInit, Mac};
use md4::{Digest, Md4};

const EX01: &str = "/onprem/ex01/EWS/Exchange.asmx";
/// UNICODE, REQUEST_TARGET, SIGN, SEAL, NTLM, ALWAYS_SIGN, ESS, TARGET_INFO, VERSION, 128,
/// KEY_EXCH, 56: what pyspnego asks for.
const CLIENT_FLAGS: u32 = 0xe28a_8235;

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut m = <Hmac<md5::Md5> as KeyInit>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn rc4(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut s: Vec<u8> = (0..=255).collect();
    let mut j = 0usize;
    for i in 0..256 {
        j = (j + s[i] as usize + key[i % key.len()] as usize) % 256;
        s.swap(i, j);
    }
    let (mut i, mut j) = (0usize, 0usize);
    data.iter()
        .map(|b| {
            i = (i + 1) % 256;
            j = (j + s[i] as usize) % 256;
            s.swap(i, j);
            b ^ s[(s[i] as usize + s[j] as usize) % 256]
        })
        .collect()
}

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

fn negotiate_message() -> Vec<u8> {
    let mut m = b"NTLMSSP\0".to_vec();
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&CLIENT_FLAGS.to_le_bytes());
    m.extend_from_slice(&[0; 16]);
    m.extend_from_slice(&[10, 0, 0x63, 0x45, 0, 0, 0, 0x0f]);
    m
}

/// A client's AUTHENTICATE_MESSAGE answering `challenge`, with KEY_EXCH and a MIC.
fn authenticate_message(
    negotiate: &[u8],
    challenge: &[u8],
    user: &str,
    domain: &str,
    password: &str,
) -> Vec<u8> {
    assert_eq!(&challenge[..8], b"NTLMSSP\0");
    assert_eq!(u32_at(challenge, 8), 2);
    let server_challenge = &challenge[24..32];
    let (ilen, ioff) = (u16_at(challenge, 40), u32_at(challenge, 44));
    let info = &challenge[ioff..ioff + ilen];
    // The server's pairs minus EOL, then MsvAvFlags (MIC present), then EOL.
    let mut pairs = info[..info.len() - 4].to_vec();
    pairs.extend_from_slice(&[6, 0, 4, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    let mut temp = vec![1, 1, 0, 0, 0, 0, 0, 0];
    temp.extend_from_slice(&0x01d9_0000_0000_0000u64.to_le_bytes());
    temp.extend_from_slice(&[0x5a; 8]);
    temp.extend_from_slice(&[0; 4]);
    temp.extend_from_slice(&pairs);
    temp.extend_from_slice(&[0; 4]);
    let nt_hash: [u8; 16] = Md4::digest(utf16(password)).into();
    let key = hmac_md5(
        &nt_hash,
        &[&utf16(&format!("{}{domain}", user.to_uppercase()))],
    );
    let proof = hmac_md5(&key, &[server_challenge, &temp]);
    let mut nt = proof.to_vec();
    nt.extend_from_slice(&temp);
    let base = hmac_md5(&key, &[&proof]);
    let exported = [0x3cu8; 16];
    let enc = rc4(&base, &exported);
    let flags = u32_at(challenge, 20) as u32;
    let (d, u, w) = (utf16(domain), utf16(user), utf16("WORKSTATION"));
    let lm = [0u8; 24];
    let mut fields = Vec::new();
    let mut payload = Vec::new();
    for part in [&lm[..], &nt, &d, &u, &w, &enc] {
        let off = 88 + payload.len();
        fields.extend_from_slice(&(part.len() as u16).to_le_bytes());
        fields.extend_from_slice(&(part.len() as u16).to_le_bytes());
        fields.extend_from_slice(&(off as u32).to_le_bytes());
        payload.extend_from_slice(part);
    }
    let mut m = b"NTLMSSP\0".to_vec();
    m.extend_from_slice(&3u32.to_le_bytes());
    m.extend_from_slice(&fields);
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&[10, 0, 0x63, 0x45, 0, 0, 0, 0x0f]);
    m.extend_from_slice(&[0; 16]);
    m.extend_from_slice(&payload);
    let mic = hmac_md5(&exported, &[negotiate, challenge, &m]);
    m[72..88].copy_from_slice(&mic);
    m
}

fn inbox_of(addr: &str) -> String {
    soap(&imp(addr), &get_folder("inbox", Some(addr)))
}

async fn send(h: &Harness, path: &str, conn: Option<u64>, auth: Option<String>) -> Resp {
    let mut b = Request::post(path)
        .header("host", "mail.contoso.com")
        .header("content-type", "text/xml; charset=utf-8");
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    let mut req = b
        .body(Body::from(inbox_of("onprem@contoso.com")))
        .expect("request");
    if let Some(c) = conn {
        req.extensions_mut().insert(ConnectionId(c));
    }
    h.send(req).await
}

/// The CHALLENGE_MESSAGE of a 401, under `scheme`.
fn challenge_of(r: &Resp, scheme: &str) -> Vec<u8> {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let v = r.header("www-authenticate");
    let b64 = v
        .strip_prefix(&format!("{scheme} "))
        .unwrap_or_else(|| panic!("no {scheme} challenge token: {v}"));
    STANDARD.decode(b64).expect("base64")
}

fn ntlm(token: &[u8]) -> Option<String> {
    Some(format!("NTLM {}", STANDARD.encode(token)))
}

/// Runs the handshake on `conn` (type 1 on `conn`, type 3 on `conn3`) and returns the answer to
/// the AUTHENTICATE_MESSAGE.
async fn handshake(
    h: &Harness,
    path: &str,
    conn: u64,
    conn3: u64,
    user: &str,
    domain: &str,
    password: &str,
) -> Resp {
    let t1 = negotiate_message();
    let r = send(h, path, Some(conn), ntlm(&t1)).await;
    let t2 = challenge_of(&r, "NTLM");
    let t3 = authenticate_message(&t1, &t2, user, domain, password);
    send(h, path, Some(conn3), ntlm(&t3)).await
}

fn assert_plain_challenges(r: &Resp) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let all: Vec<String> = r
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    assert!(all.contains(&"NTLM".to_owned()), "{all:?}");
    assert!(all.contains(&"Negotiate".to_owned()), "{all:?}");
}

#[tokio::test]
async fn the_challenge_names_the_server_and_echoes_supported_flags() {
    let h = Harness::new();
    let r = send(&h, EX01, Some(1), ntlm(&negotiate_message())).await;
    let t2 = challenge_of(&r, "NTLM");
    assert_eq!(r.headers.get_all("www-authenticate").iter().count(), 1);
    let flags = u32_at(&t2, 20) as u32;
    // UNICODE, REQUEST_TARGET, NTLM, ALWAYS_SIGN, TARGET_TYPE_DOMAIN, ESS, TARGET_INFO,
    // VERSION, 128, KEY_EXCH, 56.
    for f in [
        0x1u32,
        0x4,
        0x200,
        0x8000,
        0x1_0000,
        0x8_0000,
        0x80_0000,
        0x200_0000,
        0x2000_0000,
        0x4000_0000,
        0x8000_0000,
    ] {
        assert_ne!(flags & f, 0, "flag {f:#x} in {flags:#x}");
    }
    let (tlen, toff) = (u16_at(&t2, 12), u32_at(&t2, 16));
    assert_eq!(&t2[toff..toff + tlen], &utf16("CONTOSO")[..]);
    let (ilen, ioff) = (u16_at(&t2, 40), u32_at(&t2, 44));
    let info = &t2[ioff..ioff + ilen];
    let mut ids = Vec::new();
    let mut at = 0;
    loop {
        let (id, len) = (u16_at(info, at), u16_at(info, at + 2));
        ids.push(id);
        if id == 0 {
            break;
        }
        let value = &info[at + 4..at + 4 + len];
        match id {
            1 => assert_eq!(value, &utf16("EX01")[..]),
            2 => assert_eq!(value, &utf16("CONTOSO")[..]),
            3 => assert_eq!(value, &utf16("ex01.contoso.com")[..]),
            4 => assert_eq!(value, &utf16("contoso.com")[..]),
            7 => assert_eq!(len, 8),
            _ => {}
        }
        at += 4 + len;
    }
    assert_eq!(ids, vec![2, 1, 4, 3, 7, 0]);
    // A fresh server challenge each time.
    let again = challenge_of(
        &send(&h, EX01, Some(2), ntlm(&negotiate_message())).await,
        "NTLM",
    );
    assert_ne!(t2[24..32], again[24..32]);
}

#[tokio::test]
async fn right_password_authenticates_as_the_account_with_its_impersonation_right() {
    let h = Harness::new();
    for (conn, user, domain) in [
        (10, "svc", "CONTOSO"),
        (11, "svc", "contoso.com"),
        (12, "svc@contoso.com", ""),
        (13, "SVC", ""),
    ] {
        let r = handshake(&h, EX01, conn, conn, user, domain, PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{user} {domain}: {}", r.body);
        assert_eq!(tag(&r.body, "TotalCount").as_deref(), Some("12"));
    }
}

#[tokio::test]
async fn ntlm_behaves_as_basic_for_impersonation_denials() {
    let h = Harness::new();
    // adele has no impersonation right: the same fault Basic gets.
    let r = handshake(&h, EX01, 20, 20, "adele", "CONTOSO", PASSWORD).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    assert!(r.body.contains("ErrorImpersonateUserDenied"), "{}", r.body);
}

#[tokio::test]
async fn wrong_password_unknown_user_or_mfa_account_is_401_with_the_challenges_again() {
    let h = Harness::new();
    for (conn, user, pw) in [
        (30, "svc", "wrong"),
        (31, "ghost", PASSWORD),
        (32, "mfa", PASSWORD),
        (33, "fred@fabrikam.com", PASSWORD),
    ] {
        let r = handshake(&h, EX01, conn, conn, user, "CONTOSO", pw).await;
        assert_plain_challenges(&r);
        // The connection is not authenticated afterwards.
        let r = send(&h, EX01, Some(conn), None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{user}");
    }
    // Unknown NetBIOS domain.
    let r = handshake(&h, EX01, 34, 34, "svc", "FABRIKAM", PASSWORD).await;
    assert_plain_challenges(&r);
}

#[tokio::test]
async fn authenticate_on_another_connection_is_refused() {
    let h = Harness::new();
    let r = handshake(&h, EX01, 40, 41, "svc", "CONTOSO", PASSWORD).await;
    assert_plain_challenges(&r);
    // The same handshake on one connection succeeds.
    let t1 = negotiate_message();
    let t2 = challenge_of(&send(&h, EX01, Some(42), ntlm(&t1)).await, "NTLM");
    let t3 = authenticate_message(&t1, &t2, "svc", "CONTOSO", PASSWORD);
    let r = send(&h, EX01, Some(42), ntlm(&t3)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A replay of the same AUTHENTICATE_MESSAGE is refused: a challenge is answered once.
    let r = send(&h, EX01, Some(42), ntlm(&t3)).await;
    assert_plain_challenges(&r);
}

#[tokio::test]
async fn an_authenticated_connection_is_reused_without_a_header() {
    let h = Harness::new();
    let r = handshake(&h, EX01, 50, 50, "svc", "CONTOSO", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for _ in 0..3 {
        let r = send(&h, EX01, Some(50), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(tag(&r.body, "TotalCount").as_deref(), Some("12"));
    }
    // Another connection, or no connection id, is not.
    assert_plain_challenges(&send(&h, EX01, Some(51), None).await);
    assert_plain_challenges(&send(&h, EX01, None, None).await);
    // Nor another server on the same connection.
    let r = send(&h, "/onprem/legacy/EWS/Exchange.asmx", Some(50), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A new NEGOTIATE_MESSAGE restarts the handshake: the connection is no longer authenticated.
    let r = send(&h, EX01, Some(50), ntlm(&negotiate_message())).await;
    challenge_of(&r, "NTLM");
    assert_plain_challenges(&send(&h, EX01, Some(50), None).await);
}

#[tokio::test]
async fn raw_ntlm_inside_negotiate_is_answered_under_negotiate() {
    let h = Harness::new();
    let t1 = negotiate_message();
    let neg = |t: &[u8]| Some(format!("Negotiate {}", STANDARD.encode(t)));
    let t2 = challenge_of(&send(&h, EX01, Some(60), neg(&t1)).await, "Negotiate");
    let t3 = authenticate_message(&t1, &t2, "svc", "CONTOSO", PASSWORD);
    let r = send(&h, EX01, Some(60), neg(&t3)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // SPNEGO (an ASN.1 token, e.g. Kerberos) is not understood.
    let r = send(
        &h,
        EX01,
        Some(61),
        Some("Negotiate YIIGhgYGKwYBBQUCoIIGejCCBnag".into()),
    )
    .await;
    assert_plain_challenges(&r);
}

#[tokio::test]
async fn a_tampered_mic_is_refused() {
    let h = Harness::new();
    let t1 = negotiate_message();
    let t2 = challenge_of(&send(&h, EX01, Some(70), ntlm(&t1)).await, "NTLM");
    let mut t3 = authenticate_message(&t1, &t2, "svc", "CONTOSO", PASSWORD);
    t3[80] ^= 0x01;
    assert_plain_challenges(&send(&h, EX01, Some(70), ntlm(&t3)).await);
    // A MIC computed over another NEGOTIATE_MESSAGE is refused too.
    let t2 = challenge_of(&send(&h, EX01, Some(71), ntlm(&t1)).await, "NTLM");
    let mut other = t1.clone();
    other[12] ^= 0x10;
    let t3 = authenticate_message(&other, &t2, "svc", "CONTOSO", PASSWORD);
    assert_plain_challenges(&send(&h, EX01, Some(71), ntlm(&t3)).await);
}

#[tokio::test]
async fn without_a_connection_id_the_handshake_cannot_complete() {
    let h = Harness::new();
    let t1 = negotiate_message();
    let t2 = challenge_of(&send(&h, EX01, None, ntlm(&t1)).await, "NTLM");
    let t3 = authenticate_message(&t1, &t2, "svc", "CONTOSO", PASSWORD);
    assert_plain_challenges(&send(&h, EX01, None, ntlm(&t3)).await);
}

#[tokio::test]
async fn a_vdir_without_ntlm_never_offers_or_accepts_it() {
    let h = Harness::new();
    let path = "/onprem/oauthonly/EWS/Exchange.asmx";
    let r = send(&h, path, Some(80), ntlm(&negotiate_message())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let c = r.header("www-authenticate");
    assert!(!c.contains("NTLM") && !c.contains("Negotiate"), "{c}");
    // Exchange Online neither.
    let r = send(
        &h,
        "/EWS/Exchange.asmx",
        Some(81),
        ntlm(&negotiate_message()),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.header("www-authenticate").contains("NTLM"));
}

#[tokio::test]
async fn autodiscover_with_ntlm_enabled_authenticates_too() {
    let h = Harness::new();
    let path = "/onprem/ex01/autodiscover/autodiscover.xml";
    let body = r#"<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>onprem@contoso.com</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>"#;
    let post = |auth: String, conn: u64| {
        let mut req = Request::post(path)
            .header("host", "mail.contoso.com")
            .header("content-type", "text/xml")
            .header("authorization", auth)
            .body(Body::from(body))
            .expect("request");
        req.extensions_mut().insert(ConnectionId(conn));
        req
    };
    let t1 = negotiate_message();
    let r = h
        .send(post(format!("NTLM {}", STANDARD.encode(&t1)), 90))
        .await;
    let t2 = challenge_of(&r, "NTLM");
    let t3 = authenticate_message(&t1, &t2, "onprem", "CONTOSO", PASSWORD);
    let r = h
        .send(post(format!("NTLM {}", STANDARD.encode(&t3)), 90))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("EwsUrl"), "{}", r.body);
}
