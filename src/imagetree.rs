//! A system image read offline with backhand, as a [`Tree`] to decode names against
//! without mounting anything (`plan`, `check`).

use crate::names::{NodeKind, Tree};
use std::collections::HashMap;
use std::io::BufReader;

enum Node {
    Dir,
    File,
    Link(String),
    Other,
}

pub struct ImageTree {
    nodes: HashMap<Vec<String>, Node>,
}

impl ImageTree {
    pub fn read(file: std::fs::File) -> Result<ImageTree, String> {
        let reader = backhand::FilesystemReader::from_reader(BufReader::new(file))
            .map_err(|e| e.to_string())?;
        let mut nodes = HashMap::new();
        for node in reader.files() {
            let comps: Vec<String> = node
                .fullpath
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect();
            let kind = match &node.inner {
                backhand::InnerNode::Dir(_) => Node::Dir,
                backhand::InnerNode::File(_) => Node::File,
                backhand::InnerNode::Symlink(l) => {
                    Node::Link(l.link.to_string_lossy().into_owned())
                }
                _ => Node::Other,
            };
            nodes.insert(comps, kind);
        }
        Ok(ImageTree { nodes })
    }
}

impl Tree for ImageTree {
    /// Follows symlinks inside the image; `/` and `..` stop at the image root.
    fn kind(&self, path: &[String]) -> Option<NodeKind> {
        let mut pending: Vec<String> = path.iter().rev().cloned().collect();
        let mut real: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(name) = pending.pop() {
            match name.as_str() {
                "" | "." => continue,
                ".." => {
                    real.pop();
                    continue;
                }
                _ => {}
            }
            real.push(name);
            match self.nodes.get(&real)? {
                Node::Link(text) => {
                    links += 1;
                    if links > 40 {
                        return None;
                    }
                    real.pop();
                    if text.starts_with('/') {
                        real.clear();
                    }
                    pending.extend(text.split('/').rev().map(str::to_string));
                }
                Node::Dir => {}
                Node::File | Node::Other if !pending.is_empty() => return None,
                Node::File => return Some(NodeKind::File),
                Node::Other => return Some(NodeKind::Other),
            }
        }
        Some(NodeKind::Dir)
    }
}
