//! Micro-benchmarks of the hot paths: PBKDF2, the export cipher layer, session JSON parsing,
//! backup encrypt/decrypt, and store inserts. Run with `cargo bench --bench micro`; the
//! end-to-end comparison against the reference implementations is `scripts/bench.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Cursor;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mxkeys::backup::{BackupDecryptionKey, encrypt_session};
use mxkeys::export::{ExportReader, ExportWriter, Limits, SessionWriter};
use mxkeys::progress::NoProgress;
use mxkeys::secret::Passphrase;
use mxkeys::session::ExportedSession;
use mxkeys::store::{Access, Store};
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};

fn sessions(n: usize) -> Vec<ExportedSession> {
    (0..n)
        .map(|i| {
            let g = GroupSession::new(SessionConfig::version_1());
            let inbound = InboundGroupSession::new(&g.session_key(), SessionConfig::version_1());
            let json = serde_json::json!({
                "algorithm": "m.megolm.v1.aes-sha2",
                "room_id": format!("!room{}:example.org", i % 50),
                "sender_key": "DeHIg4gwhClxzFYcmNntPNF9YtsdZbmMy8+3kzCMXHA",
                "session_id": g.session_id(),
                "session_key": inbound.export_at_first_known_index().to_base64(),
                "sender_claimed_keys": {"ed25519": "wJ7DzYIlwFghczuxFG7F4ugAK3IFjpSaC74MzLFC6ig"},
                "forwarding_curve25519_key_chain": [],
            });
            ExportedSession::from_json(json.to_string().as_bytes()).unwrap()
        })
        .collect()
}

fn export_file(s: &[ExportedSession], pass: &Passphrase) -> Vec<u8> {
    let mut w = SessionWriter::new(ExportWriter::new(Vec::new(), pass, 1).unwrap());
    for x in s {
        w.push(x).unwrap();
    }
    w.finish().unwrap()
}

fn bench(c: &mut Criterion) {
    let pass = Passphrase::from_string("bench".into());

    let mut g = c.benchmark_group("pbkdf2");
    g.sample_size(10);
    g.bench_function("pbkdf2_sha512_500k_rounds", |b| {
        b.iter(|| mxkeys::kdf::pbkdf2_sha512::<64>(b"passphrase", b"saltsaltsaltsalt", 500_000))
    });
    // The floor of the loop above on this machine with the sha2 crate: 1,000,000 SHA-512
    // compressions, each block depending on the previous state as in PBKDF2.
    g.bench_function("sha2_compress512_1M_chained", |b| {
        b.iter(|| {
            let mut state = [0u64; 8];
            let mut block = [7u8; 128];
            for _ in 0..1_000_000 {
                sha2::block_api::compress512(&mut state, std::slice::from_ref(&block));
                block[..8].copy_from_slice(&state[0].to_be_bytes());
            }
            state
        })
    });
    g.finish();

    let s = sessions(2000);
    let file = export_file(&s, &pass);
    let mut g = c.benchmark_group("export_file");
    g.throughput(Throughput::Bytes(file.len() as u64));
    g.bench_function("write_2000_sessions", |b| b.iter(|| export_file(&s, &pass)));
    g.bench_function("read_verify_decrypt_2000_sessions", |b| {
        b.iter(|| {
            let r =
                ExportReader::open(Cursor::new(&file), &Limits::default(), &NoProgress).unwrap();
            let mut u = r.unlock(&pass, &NoProgress).map_err(|(_, e)| e).unwrap();
            let mut n = 0;
            u.decrypt_to(&NoProgress, &mut |p| {
                n += p.len();
                Ok(())
            })
            .unwrap();
            n
        })
    });
    g.bench_function("read_parse_validate_2000_sessions", |b| {
        b.iter(|| {
            let r =
                ExportReader::open(Cursor::new(&file), &Limits::default(), &NoProgress).unwrap();
            let mut u = r.unlock(&pass, &NoProgress).map_err(|(_, e)| e).unwrap();
            u.for_each_session_batch(&NoProgress, &mut |b| {
                assert!(b.iter().all(|(_, r)| r.is_ok()));
                Ok(())
            })
            .unwrap()
        })
    });
    g.finish();

    let jsons: Vec<Vec<u8>> = s.iter().map(|x| x.to_json().to_vec()).collect();
    let mut g = c.benchmark_group("session_json");
    g.throughput(Throughput::Elements(jsons.len() as u64));
    g.bench_function("parse_full_validation", |b| {
        b.iter(|| {
            jsons
                .iter()
                .map(|j| ExportedSession::from_json(j).is_ok() as usize)
                .sum::<usize>()
        })
    });
    g.bench_function("parse_stored", |b| {
        b.iter(|| {
            jsons
                .iter()
                .map(|j| ExportedSession::from_stored_json(j).is_ok() as usize)
                .sum::<usize>()
        })
    });
    g.bench_function("serialize", |b| {
        b.iter(|| s.iter().map(|x| x.to_json().len()).sum::<usize>())
    });
    g.finish();

    let key = BackupDecryptionKey::random().unwrap();
    let public = key.public_key();
    let backed: Vec<_> = s[..500]
        .iter()
        .map(|x| {
            (
                x.room_id.clone(),
                x.session_id.clone(),
                encrypt_session(&public, x, 0, false).unwrap(),
            )
        })
        .collect();
    let mut g = c.benchmark_group("backup");
    g.throughput(Throughput::Elements(500));
    g.bench_function("encrypt_500_sessions", |b| {
        b.iter(|| {
            s[..500]
                .iter()
                .map(|x| {
                    encrypt_session(&public, x, 0, false)
                        .unwrap()
                        .session_data
                        .ciphertext
                        .len()
                })
                .sum::<usize>()
        })
    });
    // The same 500 sessions through the table of the backup key (what `backup upload` uses).
    let encryptor = mxkeys::backup::BackupEncryptor::new(&public);
    g.bench_function("encrypt_500_sessions_fixed_key_table", |b| {
        b.iter(|| {
            s[..500]
                .iter()
                .map(|x| {
                    encryptor
                        .encrypt_session(x, 0, false)
                        .unwrap()
                        .session_data
                        .ciphertext
                        .len()
                })
                .sum::<usize>()
        })
    });
    g.bench_function("decrypt_500_sessions_parallel", |b| {
        b.iter(|| mxkeys::backup::decrypt_many(&key, &backed).len())
    });
    g.finish();

    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(2000));
    g.sample_size(10);
    g.bench_function("insert_2000_sessions_one_transaction", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                Store::create(dir.path(), Some(&pass), 1).unwrap();
                let store = Store::open(dir.path(), Access::Write)
                    .unwrap()
                    .unlock(Some(&pass))
                    .map_err(|(_, e)| e)
                    .unwrap();
                (dir, store)
            },
            |(dir, mut store)| {
                let mut tx = store.merge_tx().unwrap();
                tx.merge_batch(s.clone(), &mut |_, _| {}).unwrap();
                tx.commit().unwrap();
                drop(store);
                dir
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
