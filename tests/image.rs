//! The container image, read as files with no container engine: the OCI image layout that
//! `scripts/image.sh` writes to build/image/ (`make image` builds it, then runs this test).
//!
//! What a cluster would run: a non-root numeric user, the binary as entrypoint, the same
//! settings as the Dockerfile and deploy/, one layer with one file (so no shell, no busybox,
//! nothing to exec into), a static binary that runs with an empty environment and is the
//! current code, a size bound, and a digest that assembling again reproduces.
//!
//! `test = false` in Cargo.toml: the image needs the static musl binary, which a plain
//! `cargo test` does not build. Without the image every test here fails and says how to build it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

/// The one file of the image, and the user that owns and runs it (distroless' "nonroot",
/// which the Dockerfile and deploy/operator/deployment.yaml use too).
const BINARY: &str = "finetune-operator";
const UID: u64 = 65532;

/// Bound on the image's size, as stored and pulled: manifest, config and the gzipped layer.
/// Measured: 8.1 MB (the musl binary is 21.1 MB; gzip -9). The bound leaves room for the operator to
/// grow, and fails if something big (a base image, debug info) creeps in.
const MAX_COMPRESSED_BYTES: u64 = 16_000_000;
/// The same for the unpacked layer (what lands on the node's disk).
const MAX_UNPACKED_BYTES: u64 = 40_000_000;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The layout's directory: build/image/oci, or $FTO_IMAGE_DIR/oci.
fn image_dir() -> PathBuf {
    std::env::var_os("FTO_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("build/image"))
}

struct Image {
    dir: PathBuf,
    manifest_digest: String,
    manifest: Value,
    config: Value,
    /// Every blob's size, by digest.
    sizes: BTreeMap<String, u64>,
    /// The layers, uncompressed.
    layers: Vec<Vec<u8>>,
}

fn sha256(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Reads a blob and checks it against its descriptor (digest, size, media type), as a runtime
/// does before using it.
fn blob(layout: &Path, descriptor: &Value, media_type: &str) -> Vec<u8> {
    assert_eq!(descriptor["mediaType"], media_type, "{descriptor}");
    let digest = descriptor["digest"].as_str().expect("a digest");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex))
        .unwrap_or_else(|e| panic!("blob {digest}: {e}"));
    assert_eq!(sha256(&bytes), digest, "blob {digest} is corrupt");
    assert_eq!(
        Some(bytes.len() as u64),
        descriptor["size"].as_u64(),
        "{descriptor}"
    );
    bytes
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| load(&image_dir()))
}

fn load(dir: &Path) -> Image {
    let layout = dir.join("oci");
    let marker = std::fs::read(layout.join("oci-layout")).unwrap_or_else(|e| {
        panic!(
            "no OCI image layout at {} ({e}): build it with `make image` (or `make musl` and \
             scripts/image.sh)",
            layout.display()
        )
    });
    assert_eq!(json(&marker)["imageLayoutVersion"], "1.0.0");

    let index = json(&std::fs::read(layout.join("index.json")).unwrap());
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "one image in the layout: {index}");
    let mut sizes = BTreeMap::new();
    let manifest_descriptor = &manifests[0];
    let manifest = json(&blob(
        &layout,
        manifest_descriptor,
        "application/vnd.oci.image.manifest.v1+json",
    ));
    let manifest_digest = manifest_descriptor["digest"].as_str().unwrap().to_string();
    sizes.insert(
        manifest_digest.clone(),
        manifest_descriptor["size"].as_u64().unwrap(),
    );
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );

    let config = json(&blob(
        &layout,
        &manifest["config"],
        "application/vnd.oci.image.config.v1+json",
    ));
    sizes.insert(
        manifest["config"]["digest"].as_str().unwrap().to_string(),
        manifest["config"]["size"].as_u64().unwrap(),
    );

    let mut layers = Vec::new();
    for descriptor in manifest["layers"].as_array().unwrap() {
        let gz = blob(
            &layout,
            descriptor,
            "application/vnd.oci.image.layer.v1.tar+gzip",
        );
        sizes.insert(
            descriptor["digest"].as_str().unwrap().to_string(),
            gz.len() as u64,
        );
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut tar)
            .unwrap();
        layers.push(tar);
    }
    // The config names each layer by the digest of its uncompressed tar (the diff ID).
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    assert_eq!(
        config["rootfs"],
        json!({"type": "layers", "diff_ids": diff_ids})
    );

    Image {
        dir: dir.to_path_buf(),
        manifest_digest,
        manifest,
        config,
        sizes,
        layers,
    }
}

/// A file of a layer: its path without "./" or "/", and its header.
struct Entry {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    data: Vec<u8>,
}

fn entries(layer: &[u8]) -> Vec<Entry> {
    let mut archive = tar::Archive::new(layer);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let path = path.trim_start_matches("./").trim_start_matches('/');
            let header = entry.header().clone();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            Entry {
                path: path.to_string(),
                kind: header.entry_type(),
                mode: header.mode().unwrap(),
                uid: header.uid().unwrap(),
                gid: header.gid().unwrap(),
                data,
            }
        })
        .collect()
}

/// Every entry of every layer.
fn all_entries() -> Vec<Entry> {
    image().layers.iter().flat_map(|l| entries(l)).collect()
}

/// The operator's binary, taken out of the image into the test's scratch directory.
fn extracted_binary() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let entry = all_entries()
            .into_iter()
            .find(|e| e.path == BINARY)
            .expect("the binary is in the image");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-test");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(BINARY);
        std::fs::write(&path, &entry.data).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(entry.mode)).unwrap();
        path
    })
}

/// A number of `n` bytes (little-endian) at `at`.
fn le(bytes: &[u8], at: usize, n: usize) -> u64 {
    bytes[at..at + n]
        .iter()
        .rev()
        .fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

const PT_DYNAMIC: u64 = 2;
const PT_INTERP: u64 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

#[test]
fn runs_as_a_numeric_non_root_user() {
    let user = image().config["config"]["User"].as_str().unwrap_or("");
    // Numeric, so that the kubelet can check runAsNonRoot without an /etc/passwd (there is none).
    let (uid, gid) = user
        .split_once(':')
        .unwrap_or_else(|| panic!("User {user:?} is not uid:gid"));
    let uid: u64 = uid
        .parse()
        .unwrap_or_else(|_| panic!("uid in {user:?} is not numeric"));
    let gid: u64 = gid
        .parse()
        .unwrap_or_else(|_| panic!("gid in {user:?} is not numeric"));
    assert_ne!(uid, 0, "the image runs as root");
    assert_ne!(gid, 0, "the image runs with group root");
    assert_eq!((uid, gid), (UID, UID));
}

#[test]
fn the_config_says_what_the_dockerfile_says() {
    let config = &image().config;
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], json!([format!("/{BINARY}")]));
    assert_eq!(c["Cmd"], json!(["run"]));
    assert_eq!(c["WorkingDir"], "/");
    assert_eq!(c["ExposedPorts"], json!({"8080/tcp": {}}));
    // Nothing to find on a PATH, nothing to configure through the environment.
    assert!(c["Env"].is_null(), "{}", c["Env"]);

    // The Dockerfile's final stage, so that both images start the same way.
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    let instruction = |name: &str| {
        let prefix = format!("{name} ");
        let line = stage.lines().find(|l| l.starts_with(&prefix));
        line.unwrap_or_else(|| panic!("no {name} in the Dockerfile's last stage"))[prefix.len()..]
            .trim()
            .to_string()
    };
    assert_eq!(instruction("USER"), c["User"].as_str().unwrap());
    assert_eq!(json(instruction("ENTRYPOINT").as_bytes()), c["Entrypoint"]);
    assert_eq!(json(instruction("CMD").as_bytes()), c["Cmd"]);
    assert_eq!(format!("{}/tcp", instruction("EXPOSE")), "8080/tcp");
    assert!(
        stage.contains(&format!("COPY --from=build /out/{BINARY} /{BINARY}")),
        "the Dockerfile ships the binary at /{BINARY}"
    );

    // The Deployment's pod runs as the image's user.
    let deployment =
        std::fs::read_to_string(repo().join("deploy/operator/deployment.yaml")).unwrap();
    assert!(deployment.contains(&format!("runAsUser: {UID}\n")));
    assert!(deployment.contains(&format!("runAsGroup: {UID}\n")));
}

#[test]
fn labels_name_the_version_source_and_license() {
    let labels = &image().config["config"]["Labels"];
    let label = |key: &str| {
        labels[format!("org.opencontainers.image.{key}")]
            .as_str()
            .unwrap_or_else(|| panic!("no label org.opencontainers.image.{key}: {labels}"))
            .to_string()
    };
    assert_eq!(label("title"), BINARY);
    assert_eq!(label("version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(label("licenses"), env!("CARGO_PKG_LICENSE"));
    assert_eq!(label("description"), env!("CARGO_PKG_DESCRIPTION"));
    assert!(label("source").starts_with("https://"), "{labels}");
    let revision = label("revision");
    assert!(
        revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit()),
        "revision {revision:?} is not a commit"
    );
    let created = label("created");
    assert!(
        created.parse::<jiff::Timestamp>().is_ok(),
        "created {created:?} is not an RFC 3339 time"
    );
}

#[test]
fn one_layer_with_one_file_and_no_shell() {
    let entries = all_entries();
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    // Said separately, so that a failure names the worst case first.
    for shell in ["bin/sh", "bin/bash", "bin/busybox", "usr/bin/sh", "bin/ash"] {
        assert!(!paths.contains(&shell), "the image has a shell: {shell}");
    }
    assert_eq!(image().layers.len(), 1, "one layer");
    assert_eq!(
        paths,
        [BINARY],
        "the image holds the binary and nothing else"
    );
    let entry = &entries[0];
    assert_eq!(entry.kind, tar::EntryType::Regular);
    assert_eq!(entry.mode, 0o755, "mode {:o}", entry.mode);
    assert_eq!((entry.uid, entry.gid), (UID, UID), "owner");
}

#[test]
fn the_binary_is_static() {
    let elf = std::fs::read(extracted_binary()).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not 64-bit");
    assert_eq!(elf[5], 1, "not little-endian");
    assert_eq!(le(&elf, 18, 2), 62, "not x86-64 (e_machine)");
    let (phoff, phentsize, phnum) = (
        le(&elf, 32, 8) as usize,
        le(&elf, 54, 2) as usize,
        le(&elf, 56, 2) as usize,
    );
    assert!(phnum > 0, "no program headers");
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let kind = le(&elf, ph, 4);
        // An interpreter (ld.so) means a dynamic binary, which an image without libc cannot run.
        assert_ne!(kind, PT_INTERP, "the binary asks for an interpreter");
        if kind == PT_DYNAMIC {
            // A static PIE has a dynamic section for its own relocations, but needs no library.
            let (offset, size) = (le(&elf, ph + 8, 8) as usize, le(&elf, ph + 32, 8) as usize);
            for entry in elf[offset..offset + size].chunks_exact(16) {
                let tag = le(entry, 0, 8);
                assert_ne!(tag, DT_NEEDED, "the binary needs a shared library");
                if tag == DT_NULL {
                    break;
                }
            }
        }
    }
}

#[test]
fn the_binary_runs_with_nothing_around_it() {
    // No environment, no PATH, a working directory outside the repository: what the container has.
    let out = Command::new(extracted_binary())
        .arg("--version")
        .env_clear()
        .current_dir("/")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{BINARY} {}\n", env!("CARGO_PKG_VERSION"))
    );

    // It is the current code: the CRD it prints is the committed one (`make crds` writes it from
    // the debug build).
    let out = Command::new(extracted_binary())
        .arg("crd")
        .env_clear()
        .current_dir("/")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let committed =
        std::fs::read_to_string(repo().join("crds/finetune.dev_finetunejobs.yaml")).unwrap();
    assert!(
        String::from_utf8(out.stdout).unwrap() == committed,
        "the image's binary prints another CRD than crds/: a stale binary? `make image` rebuilds it"
    );
}

#[test]
fn the_image_is_small() {
    let image = image();
    let stored: u64 = image.sizes.values().sum();
    let unpacked: u64 = image.layers.iter().map(|l| l.len() as u64).sum();
    println!("image: {stored} bytes stored (manifest, config, layers), {unpacked} bytes unpacked");
    assert!(
        stored <= MAX_COMPRESSED_BYTES,
        "the image is {stored} bytes, over the bound of {MAX_COMPRESSED_BYTES}"
    );
    assert!(
        unpacked <= MAX_UNPACKED_BYTES,
        "the layers unpack to {unpacked} bytes, over the bound of {MAX_UNPACKED_BYTES}"
    );
    // Only the blobs the manifest names: no leftovers of other images in the layout.
    let on_disk = std::fs::read_dir(image.dir.join("oci/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(
        on_disk,
        image.sizes.len(),
        "blobs: {:?}",
        image.sizes.keys()
    );
}

#[test]
fn the_layout_names_its_digest() {
    let image = image();
    let recorded = std::fs::read_to_string(image.dir.join("digest")).unwrap();
    assert_eq!(recorded.trim(), image.manifest_digest);
    assert_eq!(image.manifest["layers"].as_array().unwrap().len(), 1);
}

#[test]
fn assembling_again_gives_the_same_digest() {
    // scripts/image.sh with the binary from the image, into a scratch directory: same commit,
    // same binary, so the same bytes, down to the manifest's digest.
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-again");
    let _ = std::fs::remove_dir_all(&out_dir);
    let out = Command::new(repo().join("scripts/image.sh"))
        .arg(extracted_binary())
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/image.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = load(&out_dir);
    assert_eq!(
        again.manifest_digest,
        image().manifest_digest,
        "assembled again, the image differs (was build/image built at another commit? `make \
         image` rebuilds it)\nconfig before: {}\nconfig again: {}",
        image().config,
        again.config
    );
    std::fs::remove_dir_all(&out_dir).unwrap();
}
