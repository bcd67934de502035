//! A system image read offline with backhand, as a [`Tree`] to decode names against
//! without mounting anything (`plan`, `check`).

use crate::names::{Node as Nodeish, Tree};
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
    fn lstat(&self, path: &[String]) -> Option<Nodeish> {
        if path.is_empty() {
            return Some(Nodeish::Dir);
        }
        Some(match self.nodes.get(path)? {
            Node::Dir => Nodeish::Dir,
            Node::File => Nodeish::File,
            Node::Link(t) => Nodeish::Symlink(t.clone()),
            Node::Other => Nodeish::Other,
        })
    }
}
