//! The export file format through the CLI: every fixture from other implementations decrypts
//! to its exact plaintext, every dialect is read, and every file mxkeys writes decrypts with
//! an independent implementation of Element's algorithm.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{Env, PASS, element, fixture, manifest, read_sessions, session_set, text};
use serde_json::Value;

/// Decrypt `file` with `pass_file` to OUT and return OUT's bytes.
fn decrypt_to_file(env: &Env, file: &Path, pass_file: &Path, extra: &[&str]) -> Vec<u8> {
    let out = env.path("out.json");
    let _ = std::fs::remove_file(&out);
    env.cmd()
        .arg("decrypt")
        .arg(file)
        .arg("--passphrase-file")
        .arg(pass_file)
        .arg("-o")
        .arg(&out)
        .args(extra)
        .assert()
        .success();
    std::fs::read(&out).unwrap()
}

#[test]
fn every_manifest_fixture_decrypts_to_its_exact_plaintext() {
    let env = Env::new();
    let m = manifest();
    let files = m["files"].as_array().unwrap();
    assert_eq!(files.len(), 14, "the manifest lists 14 files");
    for f in files {
        let name = f["name"].as_str().unwrap();
        let pass = f["passphrase"].as_str().unwrap();
        let hex: String = pass.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, f["passphrase_hex"].as_str().unwrap(), "{name}");
        // exactly the passphrase bytes, no newline
        let pf = env.write_secret(&format!("{name}.pass"), pass);
        let got = decrypt_to_file(&env, &fixture(f["file"].as_str().unwrap()), &pf, &[]);
        let want = std::fs::read(fixture(f["plaintext"].as_str().unwrap())).unwrap();
        assert!(got == want, "{name}: plaintext differs");
        if let Some(n) = f["sessions"].as_u64() {
            let v: Vec<Value> = serde_json::from_slice(&got).unwrap();
            assert_eq!(v.len() as u64, n, "{name}");
        }
    }
}

#[test]
fn unicode_passphrase_fixture_needs_the_exact_bytes() {
    let env = Env::new();
    let file = fixture("export/element-unicode-passphrase.txt");
    // NFD form of "ä" (a + combining diaeresis) is a different passphrase: no normalisation.
    let nfd = "pa\u{308}ssw\u{f6}rd \u{1f511} \u{65e5}\u{672c}\u{8a9e} \u{3a9}\u{3bc}\u{3ad}\u{3b3}\u{3b1}";
    let pf = env.write_secret("nfd.pass", nfd);
    let out = env
        .cmd()
        .arg("decrypt")
        .arg(&file)
        .arg("--passphrase-file")
        .arg(&pf)
        .arg("-o")
        .arg(env.path("x.json"))
        .output()
        .unwrap();
    common::assert_error(
        &out,
        12,
        "wrong passphrase, or the file was modified",
        "check the passphrase",
    );
    let nfc =
        "p\u{e4}ssw\u{f6}rd \u{1f511} \u{65e5}\u{672c}\u{8a9e} \u{3a9}\u{3bc}\u{3ad}\u{3b3}\u{3b1}";
    let pf = env.write_secret("nfc.pass", format!("{nfc}\n"));
    let got = decrypt_to_file(&env, &file, &pf, &[]);
    assert_eq!(
        got,
        std::fs::read(fixture("export/plaintext/element-unicode-passphrase.json")).unwrap()
    );
}

fn vectors() -> Vec<Value> {
    let m: Value =
        serde_json::from_slice(&std::fs::read(fixture("export/vectors/manifest.json")).unwrap())
            .unwrap();
    m["vectors"].as_array().unwrap().clone()
}

#[test]
fn element_vectors_decrypt_with_raw() {
    let env = Env::new();
    let vs: Vec<Value> = vectors()
        .into_iter()
        .filter(|v| v.get("plaintext").is_some())
        .collect();
    assert_eq!(vs.len(), 4);
    for (i, v) in vs.iter().enumerate() {
        let pf = env.write_secret(
            &format!("v{i}.pass"),
            v["passphrase"].as_str().unwrap().as_bytes(),
        );
        let file = fixture(&format!("export/vectors/{}", v["file"].as_str().unwrap()));
        let got = decrypt_to_file(&env, &file, &pf, &["--raw"]);
        assert_eq!(
            got,
            v["plaintext"].as_str().unwrap().as_bytes(),
            "{}",
            v["file"]
        );
    }
}

#[test]
fn element_vector_without_raw_is_not_a_key_export() {
    let env = Env::new();
    let pf = env.write_secret("p", "password");
    let out = env
        .cmd()
        .arg("decrypt")
        .arg(fixture("export/vectors/element-vector-1.txt"))
        .arg("--passphrase-file")
        .arg(&pf)
        .arg("-o")
        .arg(env.path("out.json"))
        .output()
        .unwrap();
    common::assert_error(
        &out,
        13,
        "the file decrypted but its content is not a key export",
        "--raw",
    );
    assert!(!env.path("out.json").exists());
}

#[test]
fn element_vector_four_needs_the_64_bit_counter() {
    // The all-0xFF IV: a 128-bit counter would carry into the IV's upper half.
    let env = Env::new();
    let v = &vectors()[3];
    let file = fixture("export/vectors/element-vector-4.txt");
    let body = element::unarmor(&std::fs::read(&file).unwrap());
    assert!(body[17..33].iter().all(|b| *b == 0xff));
    let pass = v["passphrase"].as_str().unwrap();
    let pf = env.write_secret("p", pass);
    let got = decrypt_to_file(&env, &file, &pf, &["--raw"]);
    assert_eq!(got, b"alphanumerically".repeat(4));
    // and a 128-bit counter would not have given that
    let (ak, _) = element::derive(pass.as_bytes(), &body[1..17], 1000);
    let mut ct = body[37..body.len() - 32].to_vec();
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&body[17..33]);
    element::ctr128(&ak, &iv, &mut ct);
    assert_ne!(ct, got);
}

#[test]
fn rust_sdk_test_export_decrypts_and_has_the_expected_ids() {
    let env = Env::new();
    let file = fixture("export/vectors/rust-sdk-test-export.txt");
    let raw = std::fs::read(&file).unwrap();
    assert!(!raw.ends_with(b"\n"), "fixture has no final newline");
    let v = vectors()
        .into_iter()
        .find(|v| v["file"] == "rust-sdk-test-export.txt")
        .unwrap();
    let pf = env.write_secret("p", "1234\n");
    let got = decrypt_to_file(&env, &file, &pf, &[]);
    let sessions: Vec<Value> = serde_json::from_slice(&got).unwrap();
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s["room_id"], v["room_id"]);
    assert_eq!(s["session_id"], v["session_id"]);
    assert_eq!(s["sender_key"], v["sender_key"]);
    assert_eq!(s["algorithm"], "m.megolm.v1.aes-sha2");

    // inspect names its dialect
    let out = env
        .cmd()
        .args(["--json", "inspect"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = common::one_json(&out);
    let d = r["dialect"].as_str().unwrap();
    assert!(d.contains("71-column lines"), "{d}");
    assert!(d.contains("unpadded base64"), "{d}");
    assert!(d.contains("no final newline"), "{d}");
    assert_eq!(r["rounds"], 1);

    // and the session imports, with its ids
    env.init_store();
    let pf2 = env.write_secret("p2", "1234");
    env.scmd()
        .arg("import")
        .arg(&file)
        .arg("--passphrase-file")
        .arg(&pf2)
        .assert()
        .success();
    let l = env.list_json();
    assert_eq!(l["sessions"], 1);
    assert_eq!(l["rooms"][0]["room_id"], v["room_id"]);
}

/// The base64 body of element-three.txt, without line breaks.
fn element_three_b64() -> String {
    use base64::Engine;
    let body = element::unarmor(&std::fs::read(fixture("export/element-three.txt")).unwrap());
    base64::engine::general_purpose::STANDARD.encode(body)
}

/// Write `text`, check it decrypts to element-three's plaintext and that inspect describes it
/// with each of `dialect`.
fn check_rewrapped(text_: &str, dialect: &[&str]) {
    let env = Env::new();
    let f = env.write("rewrapped.txt", text_);
    let pf = env.pass_file();
    let got = decrypt_to_file(&env, &f, &pf, &[]);
    assert_eq!(
        got,
        std::fs::read(fixture("export/plaintext/element-three.json")).unwrap()
    );
    let out = env
        .cmd()
        .args(["--json", "inspect"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = common::one_json(&out);
    let d = r["dialect"].as_str().unwrap();
    for want in dialect {
        assert!(d.contains(want), "dialect {d:?} lacks {want:?}");
    }
}

#[test]
fn rewrapped_76_columns_decrypts() {
    let b64 = element_three_b64();
    let mut t = format!("{}\n", element::HEADER);
    for c in b64.as_bytes().chunks(76) {
        t.push_str(std::str::from_utf8(c).unwrap());
        t.push('\n');
    }
    t.push_str(element::FOOTER);
    t.push('\n');
    check_rewrapped(&t, &["76-column lines", "LF"]);
}

#[test]
fn rewrapped_one_line_unpadded_decrypts() {
    let b64 = element_three_b64();
    assert!(b64.ends_with('='), "the body needs padding for this test");
    let t = format!(
        "{}\n{}\n{}\n",
        element::HEADER,
        b64.trim_end_matches('='),
        element::FOOTER
    );
    check_rewrapped(&t, &["body on one line", "unpadded base64"]);
}

#[test]
fn rewrapped_indented_with_blank_lines_decrypts() {
    let b64 = element_three_b64();
    let mut t = format!("  {}\n\n", element::HEADER);
    for (i, c) in b64.as_bytes().chunks(64).enumerate() {
        t.push_str(if i % 2 == 0 { "    " } else { "\t" });
        t.push_str(std::str::from_utf8(c).unwrap());
        t.push_str("  \n");
        if i % 3 == 0 {
            t.push('\n');
        }
    }
    t.push_str("   ");
    t.push_str(element::FOOTER);
    t.push('\n');
    check_rewrapped(&t, &["indented", "blank lines"]);
}

#[test]
fn rewrapped_text_after_footer_decrypts() {
    let b64 = element_three_b64();
    let mut t = format!("{}\n", element::HEADER);
    for c in b64.as_bytes().chunks(96) {
        t.push_str(std::str::from_utf8(c).unwrap());
        t.push('\n');
    }
    t.push_str(element::FOOTER);
    t.push_str("\n\nSent from my phone. -----BEGIN nothing\n");
    check_rewrapped(&t, &["text after the footer", "96-column lines"]);
}

#[test]
fn rewrapped_mixed_line_endings_decrypt() {
    let b64 = element_three_b64();
    let mut t = format!("{}\r\n", element::HEADER);
    for (i, c) in b64.as_bytes().chunks(100).enumerate() {
        t.push_str(std::str::from_utf8(c).unwrap());
        t.push_str(if i % 2 == 0 { "\r\n" } else { "\n" });
    }
    t.push_str(element::FOOTER);
    check_rewrapped(&t, &["mixed LF/CRLF", "no final newline"]);
}

/// Element's files from the manifest fixtures, read back through a JSON comparison.
fn fixture_sessions(name: &str) -> Vec<Value> {
    read_sessions(&fixture(&format!("export/plaintext/{name}.json")))
}

#[test]
fn export_decrypts_with_elements_algorithm() {
    let env = Env::new();
    env.init_store();
    env.import_ok(&[&fixture("export/element-three.txt")]);
    let pf = env.pass_file();
    let out = env.path("exported.txt");
    let o = env
        .scmd()
        .arg("export")
        .arg("-o")
        .arg(&out)
        .args(["--rounds", "1000", "--passphrase-file"])
        .arg(&pf)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains(common::LOW_ROUNDS_WARNING));
    let opened = element::decrypt_file(&out, PASS.as_bytes());
    assert_eq!(opened.rounds, 1000);
    let got: Vec<Value> = serde_json::from_slice(&opened.plaintext).unwrap();
    assert_eq!(
        session_set(&got),
        session_set(&fixture_sessions("element-three"))
    );
}

#[test]
fn encrypt_output_decrypts_with_elements_algorithm() {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env.path("enc.txt");
    let o = env
        .cmd()
        .arg("encrypt")
        .arg(fixture("export/plaintext/element-thousand.json"))
        .arg("-o")
        .arg(&out)
        .args(["--rounds", "1234", "--passphrase-file"])
        .arg(&pf)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains(common::LOW_ROUNDS_WARNING));
    let opened = element::decrypt_file(&out, PASS.as_bytes());
    assert_eq!(opened.rounds, 1234);
    // a thousand sessions span many 128-column lines
    assert!(std::fs::read_to_string(&out).unwrap().lines().count() > 1000);
    let got: Vec<Value> = serde_json::from_slice(&opened.plaintext).unwrap();
    assert_eq!(got.len(), 1000);
    assert_eq!(
        session_set(&got),
        session_set(&fixture_sessions("element-thousand"))
    );
}

#[test]
fn reencrypt_output_decrypts_with_elements_algorithm() {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env.path("re.txt");
    env.cmd()
        .arg("reencrypt")
        .arg(fixture("export/wasm-three.txt"))
        .arg("-o")
        .arg(&out)
        .args(["--rounds", "1500", "--passphrase-file"])
        .arg(&pf)
        .assert()
        .success();
    let opened = element::decrypt_file(&out, PASS.as_bytes());
    assert_eq!(opened.rounds, 1500);
    assert_eq!(
        opened.plaintext,
        std::fs::read(fixture("export/plaintext/wasm-three.json")).unwrap()
    );
}

#[test]
fn merge_output_decrypts_with_elements_algorithm() {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env.path("merged.txt");
    env.cmd()
        .arg("merge")
        .arg(fixture("export/element-three.txt"))
        .arg(fixture("export/wasm-three.txt"))
        .arg(fixture("export/element-one.txt"))
        .arg("-o")
        .arg(&out)
        .args(["--rounds", "1000", "--passphrase-file"])
        .arg(&pf)
        .assert()
        .success();
    let opened = element::decrypt_file(&out, PASS.as_bytes());
    assert_eq!(opened.rounds, 1000);
    let got: Vec<Value> = serde_json::from_slice(&opened.plaintext).unwrap();
    let mut want = session_set(&fixture_sessions("element-three"));
    want.extend(session_set(&fixture_sessions("wasm-three")));
    want.extend(session_set(&fixture_sessions("element-one")));
    assert_eq!(got.len(), want.len());
    assert_eq!(session_set(&got), want);
}

#[test]
fn default_rounds_are_500000() {
    let env = Env::new();
    let pf = env.pass_file();
    let input = env.write("empty.json", "[]");
    let out = env.path("default.txt");
    let o = env
        .cmd()
        .arg("encrypt")
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        !text(&o.stderr).contains(common::LOW_ROUNDS_WARNING),
        "no low-rounds warning for the default"
    );
    let opened = element::decrypt_file(&out, PASS.as_bytes());
    assert_eq!(opened.rounds, 500_000);
    assert_eq!(opened.plaintext, b"[]");
}

#[test]
fn written_ivs_have_bit_63_clear_and_fresh_salts() {
    let env = Env::new();
    let pf = env.pass_file();
    let input = env.write("empty.json", "[]");
    let mut salts = std::collections::HashSet::new();
    let mut ivs = std::collections::HashSet::new();
    for i in 0..8 {
        let out = env.path(&format!("f{i}.txt"));
        env.cmd()
            .arg("encrypt")
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .args(["--rounds", "1", "--passphrase-file"])
            .arg(&pf)
            .assert()
            .success();
        // decrypt_file asserts iv[8] & 0x80 == 0
        let o = element::decrypt_file(&out, PASS.as_bytes());
        assert_eq!(o.rounds, 1);
        salts.insert(o.salt);
        ivs.insert(o.iv);
    }
    assert_eq!(salts.len(), 8, "salts repeat");
    assert_eq!(ivs.len(), 8, "IVs repeat");
}

#[test]
fn wrapping_64_bit_counter_decrypts_as_element_does() {
    let env = Env::new();
    let pt = std::fs::read(fixture("export/plaintext/element-three.json")).unwrap();
    let pf = env.pass_file();
    // all 0xFF, and a random upper half with the low half about to wrap
    let mut iv2 = element::random::<16>();
    iv2[8..].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
    for (i, iv) in [[0xffu8; 16], iv2].into_iter().enumerate() {
        let salt = element::random::<16>();
        let body = element::seal_with(&pt, PASS.as_bytes(), 1, salt, iv, 1000);
        // the test means something: a 128-bit counter gives another plaintext
        let (ak, _) = element::derive(PASS.as_bytes(), &salt, 1000);
        let mut ct = body[37..body.len() - 32].to_vec();
        element::ctr128(&ak, &iv, &mut ct);
        assert_ne!(ct, pt);
        let f = env.write(&format!("wrap{i}.txt"), element::armor(&body, 128));
        let got = decrypt_to_file(&env, &f, &pf, &[]);
        assert!(got == pt, "IV {iv:02x?}: plaintext differs");
    }
}

#[test]
fn file_from_the_independent_encryptor_imports() {
    let env = Env::new();
    env.init_store();
    let pt = std::fs::read(fixture("sessions/sessions-3.json")).unwrap();
    let f = env.write("element.txt", element::encrypt(&pt, PASS.as_bytes(), 1000));
    let r = env.import_ok(&[&f]);
    assert_eq!(r["imported"], 3);
    let exported = env.export_sessions("back.txt", &[]);
    assert_eq!(
        session_set(&exported),
        session_set(&read_sessions(&fixture("sessions/sessions-3.json")))
    );
}
