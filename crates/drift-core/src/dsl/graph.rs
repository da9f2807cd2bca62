//! A definition's node graph for people: nodes, edges, node types and the disconnected nodes,
//! laid out by a layout crate (layout-rs, a Graphviz-style layered layout) so the server can
//! hand out an SVG whose nodes a page can highlight as states arrive.

use super::{Definition, Node};
use layout::backends::svg::SVGWriter;
use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::geometry::Point;
use layout::core::style::StyleAttr;
use layout::std_shapes::render::get_shape_size;
use layout::std_shapes::shapes::{Arrow, Element, ShapeKind};
use layout::topo::layout::VisualGraph;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GraphNode {
    pub id: String,
    /// HTTP, SCRIPT, BRANCH, INSTRUCTION, WAIT, SUCCESS, FAILURE, CHILD.
    #[serde(rename = "type")]
    pub node_type: String,
    /// The stored node definition it uses, if it is not inline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    pub start: bool,
    /// No edge from the start reaches it (run with execute-node).
    pub disconnected: bool,
    /// Where the layout put its centre, and its size.
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GraphEdge {
    pub from: String,
    pub to: String,
    /// `next`, `choice N`, `default`, `timeout`.
    pub label: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Graph {
    pub id: String,
    pub version: String,
    pub start_node: String,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    pub disconnected: Vec<String>,
    /// The laid-out drawing (empty if the layout failed); every node is a
    /// `<g class="node" data-node="NAME">`, every edge a `<g class="edge" data-from data-to>`.
    #[serde(skip)]
    pub svg: String,
}

fn edges_of(def: &Definition) -> Vec<GraphEdge> {
    let mut out = Vec::new();
    let mut add = |from: &str, to: &str, label: String| {
        if def.states.contains_key(to) {
            out.push(GraphEdge {
                from: from.to_string(),
                to: to.to_string(),
                label,
            });
        }
    };
    for (name, entry) in &def.states {
        if let Some(next) = &entry.next_node {
            add(name, next, "next".into());
        }
        match &entry.node {
            Some(Node::Branch(b)) => {
                for (i, c) in b.choices.iter().enumerate() {
                    add(name, &c.next_node, format!("choice {}", i + 1));
                }
                add(name, &b.default_node, "default".into());
            }
            Some(Node::Instruction(i)) => {
                if let Some(t) = &i.on_timeout {
                    add(name, t, "timeout".into());
                }
            }
            _ => {}
        }
    }
    out
}

fn attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn fill(node_type: &str) -> Color {
    Color::new(match node_type {
        "INSTRUCTION" => 0xdbeafeff,
        "HTTP" => 0xfef3c7ff,
        "BRANCH" => 0xede9feff,
        "SUCCESS" => 0xdcfce7ff,
        "FAILURE" => 0xfee2e2ff,
        "WAIT" => 0xe0f2feff,
        _ => 0xf3f4f6ff,
    })
}

/// The graph of a compiled definition (node references already resolved; an unresolved one
/// shows as type `REFERENCE`).
pub fn graph(def: &Definition) -> Graph {
    let reach = super::validate::reachable(def);
    let edges = edges_of(def);
    let mut vg = VisualGraph::new(Orientation::TopToBottom);
    let mut handles = Vec::new();
    let mut nodes = Vec::new();
    for (name, entry) in &def.states {
        let node_type = entry
            .node
            .as_ref()
            .map(Node::type_name)
            .unwrap_or("REFERENCE")
            .to_string();
        let disconnected = !reach.contains(name.as_str());
        let shape = ShapeKind::new_box(&format!("{name}\n{node_type}"));
        let look = StyleAttr::new(
            Color::fast(if disconnected { "gray" } else { "black" }),
            if name == &def.start_node { 3 } else { 1 },
            Some(fill(&node_type)),
            6,
            14,
        );
        let size = get_shape_size(Orientation::TopToBottom, &shape, 14, false);
        let props = format!(
            "class=\"node{}\" data-node=\"{}\" data-type=\"{}\"",
            if disconnected { " disconnected" } else { "" },
            attr(name),
            node_type
        );
        handles.push(vg.add_node(Element::create_with_properties(
            shape,
            look,
            Orientation::TopToBottom,
            size,
            props,
        )));
        nodes.push(GraphNode {
            id: name.clone(),
            node_type,
            resource_id: entry.resource_id.clone(),
            start: name == &def.start_node,
            disconnected,
            x: 0.0,
            y: 0.0,
            width: size.x,
            height: size.y,
        });
    }
    let index = |n: &str| def.states.keys().position(|k| k == n);
    for e in &edges {
        if let (Some(a), Some(b)) = (index(&e.from), index(&e.to)) {
            // Edge labels stay in the JSON and a data attribute: layout-rs 0.1.3 can trip an
            // internal assertion when it places label nodes.
            let props = format!(
                "class=\"edge\" data-from=\"{}\" data-to=\"{}\" data-label=\"{}\"",
                attr(&e.from),
                attr(&e.to),
                attr(&e.label)
            );
            vg.add_edge(Arrow::simple_with_properties("", props), handles[a], handles[b]);
        }
    }
    // The layout crate asserts on shapes it cannot place; a graph it cannot draw still has its
    // JSON, never a crashed request.
    let laid_out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut svg = SVGWriter::new();
        if !handles.is_empty() {
            vg.do_it(false, false, false, &mut svg);
        }
        let at: Vec<Point> = handles.iter().map(|h| vg.pos(*h).center()).collect();
        (svg.finalize(), at)
    }));
    let svg = match laid_out {
        Ok((svg, at)) => {
            for (n, p) in nodes.iter_mut().zip(at) {
                n.x = p.x;
                n.y = p.y;
            }
            svg
        }
        Err(_) => {
            tracing::warn!(definition = %def.id, "the layout crate could not lay out this graph");
            String::new()
        }
    };
    let disconnected = nodes.iter().filter(|n| n.disconnected).map(|n| n.id.clone()).collect();
    Graph {
        id: def.id.clone(),
        version: def.version.clone(),
        start_node: def.start_node.clone(),
        nodes,
        edges,
        disconnected,
        svg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_names_every_node_edge_and_the_disconnected_ones() {
        let def: Definition = serde_json::from_value(serde_json::json!({
            "id": "g", "startNode": "ask",
            "states": {
                "ask": {"node": {"type": "INSTRUCTION", "layoutId": "l", "inputOptions": []}, "nextNode": "pick"},
                "pick": {"node": {"type": "BRANCH", "choices": [{"rule": "true", "nextNode": "done"}], "defaultNode": "ask"}},
                "done": {"node": {"type": "SUCCESS"}},
                "verify": {"node": {"type": "SCRIPT", "script": "1"}}
            }
        }))
        .unwrap();
        let g = graph(&def);
        assert_eq!(g.nodes.len(), 4);
        assert_eq!(g.disconnected, vec!["verify".to_string()]);
        assert!(
            g.edges
                .iter()
                .any(|e| e.from == "pick" && e.to == "ask" && e.label == "default")
        );
        assert!(
            g.edges
                .iter()
                .any(|e| e.from == "ask" && e.to == "pick" && e.label == "next")
        );
        assert!(g.svg.starts_with("<svg") || g.svg.contains("<svg"));
        for n in ["ask", "pick", "done", "verify"] {
            assert!(g.svg.contains(&format!("data-node=\"{n}\"")), "{n} in svg");
        }
        // Laid out: not every node on the same spot.
        assert!(!g.svg.is_empty());
        assert!(g.nodes.iter().any(|n| n.y != g.nodes[0].y));
    }

    #[test]
    fn every_example_definition_lays_out() {
        let reg =
            crate::dsl::Registry::load_dirs(&[std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")])
                .unwrap();
        for id in reg.workflow_ids() {
            let def = reg.compile(reg.workflow(id, None).unwrap()).unwrap();
            let g = graph(&def);
            assert!(!g.svg.is_empty(), "{id} was laid out");
            assert_eq!(g.nodes.len(), def.states.len());
        }
    }
}
