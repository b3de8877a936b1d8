//! ed25519 by Python's `cryptography`, the independent reference Ferry's own
//! signatures are checked against.

use std::process::Command;

use base64::Engine as _;

use super::cmd::{run, run_with_input};

/// An ed25519 key pair made by Python's `cryptography`: (secret base64 of seed ||
/// public, public base64).
pub fn python_keypair() -> (String, String) {
    let out = run(Command::new("python3").args([
        "-c",
        r#"
import base64
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
k = Ed25519PrivateKey.generate()
seed = k.private_bytes_raw()
pub = k.public_key().public_bytes_raw()
print(base64.b64encode(seed + pub).decode())
print(base64.b64encode(pub).decode())
"#,
    ]));
    let mut lines = out.lines();
    (
        lines.next().unwrap().to_owned(),
        lines.next().unwrap().to_owned(),
    )
}

/// Signs `data` with Python's `cryptography`, using the seed of `secret_b64`.
pub fn python_sign(secret_b64: &str, data: &[u8]) -> Vec<u8> {
    let out = run_with_input(
        Command::new("python3").args([
            "-c",
            r#"
import base64, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
seed = base64.b64decode(sys.argv[1])[:32]
data = sys.stdin.buffer.read()
print(base64.b64encode(Ed25519PrivateKey.from_private_bytes(seed).sign(data)).decode())
"#,
            secret_b64,
        ]),
        data,
    );
    base64::engine::general_purpose::STANDARD
        .decode(out.trim())
        .unwrap()
}

/// Whether Python's `cryptography` accepts `sig` over `data` by `public_b64`.
pub fn python_verifies(public_b64: &str, sig: &[u8], data: &[u8]) -> bool {
    let sig_b64 = base64::engine::general_purpose::STANDARD.encode(sig);
    let out = run_with_input(
        Command::new("python3").args([
            "-c",
            r#"
import base64, sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
key = Ed25519PublicKey.from_public_bytes(base64.b64decode(sys.argv[1]))
try:
    key.verify(base64.b64decode(sys.argv[2]), sys.stdin.buffer.read())
    print("good")
except InvalidSignature:
    print("bad")
"#,
            public_b64,
            &sig_b64,
        ]),
        data,
    );
    match out.trim() {
        "good" => true,
        "bad" => false,
        other => panic!("unexpected python output {other}"),
    }
}
