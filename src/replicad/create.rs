//! `pairbeat replica create NAME`: a new metadata file (just created, Inconsistent)
//! and, when the backing is a file that does not exist, a sparse image of the
//! configured size. Works with no daemon running, as `drbdadm create-md` does.

use std::fs::OpenOptions;
use std::os::unix::fs::FileTypeExt;

use crate::config::replica::ReplicaConfig;
use crate::config::Config;
use crate::replica::hello::resource_uuid;
use crate::replica::meta::Meta;

/// The resource UUID of a replica in this cluster.
pub fn resource_of(config: &Config, r: &ReplicaConfig) -> [u8; 16] {
    resource_uuid(&config.cluster_name, &r.name, r.size)
}

/// Creates the metadata (and a sparse image if the backing file is missing).
/// Refuses to overwrite existing metadata unless `force`.
pub fn create(config: &Config, r: &ReplicaConfig, force: bool) -> Result<String, String> {
    if r.meta.exists() && !force {
        return Err(format!(
            "{} exists: the replica `{}` was created already (add --force to start it over; its data then resyncs from the peer)",
            r.meta.display(),
            r.name
        ));
    }
    let mut made = Vec::new();
    match std::fs::metadata(&r.backing) {
        Ok(m) => {
            let len = if m.file_type().is_block_device() {
                block_size(&r.backing)?
            } else {
                m.len()
            };
            if len < r.size {
                return Err(format!(
                    "{} holds {len} bytes, less than size = {} in [[replica]] `{}`",
                    r.backing.display(),
                    r.size,
                    r.name
                ));
            }
        }
        Err(_) => {
            if let Some(dir) = r.backing.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&r.backing)
                .map_err(|e| format!("cannot create {}: {e}", r.backing.display()))?;
            f.set_len(r.size)
                .map_err(|e| format!("cannot size {}: {e}", r.backing.display()))?;
            made.push(format!("a sparse image of {} bytes at {}", r.size, r.backing.display()));
        }
    }
    let meta = Meta::create(resource_of(config, r), r.size, r.extent, config.local as u32);
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&r.meta)
        .map_err(|e| format!("cannot create {}: {e}", r.meta.display()))?;
    f.set_len(meta.file_size()).map_err(|e| e.to_string())?;
    super::disk::write_meta(&f, &meta).map_err(|e| format!("cannot write {}: {e}", r.meta.display()))?;
    made.push(format!("metadata at {}", r.meta.display()));
    Ok(format!(
        "replica {}: created {}. Start pairbeat-replicad@{} on both nodes, then on one: `pairbeat replica primary {} --new-data` (fresh zeroed images) or `--force` (its data is the truth; a full resync follows)",
        r.name,
        made.join(" and "),
        r.name,
        r.name
    ))
}

fn block_size(p: &std::path::Path) -> Result<u64, String> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?;
    f.seek(SeekFrom::End(0))
        .map_err(|e| format!("cannot size {}: {e}", p.display()))
}
