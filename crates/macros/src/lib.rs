//! spate-macros: the `f!` macro, closures whose captured variables ship as serde values.
//!
//! - [`f`]: the macro. It finds the closure's free variables ([`Rewriter`]), clones them
//!   into one `spate::func::Captured` when the closure is made, and rewrites the body to
//!   read them from there, so the closure itself captures only that value.
//!
//! Finding free variables is syntactic (a proc macro sees no types): a lower-case name
//! used as a value that no pattern inside the closure binds is a captured variable. Names
//! called as functions (`parse(x)`) and paths (`a::b`) are not; upper-case names are
//! constants, statics or types. Macro arguments are read when they parse as
//! comma-separated expressions (`format!`, `assert!`, `vec!`, …), and inline format
//! arguments (`"{name}"`) are seen too.

use std::collections::HashSet;

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::punctuated::Punctuated;
use syn::visit_mut::{self, VisitMut};
use syn::{Expr, ExprClosure, Macro, Pat, Stmt, Token, parse_quote};

/// A closure that may capture variables, for any spate operation:
/// `rdd.filter(f!(|x| *x > threshold))`.
///
/// Each captured variable is cloned when the closure is made (so it stays usable
/// afterwards) and shipped to executors once per closure as serde data; it must be
/// `Clone + Serialize + DeserializeOwned + Send + Sync + 'static` (owned values; a large
/// one can be a `Broadcast`). The body reads the values as a `move` closure would; it
/// cannot change them (operations take `Fn`).
#[proc_macro]
pub fn f(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let closure = syn::parse_macro_input!(input as ExprClosure);
    expand(closure).into()
}

fn expand(mut closure: ExprClosure) -> TokenStream {
    let values = Ident::new("__spate_values", Span::mixed_site());
    let holder = Ident::new("__spate_captured", Span::mixed_site());
    let mut rw = Rewriter {
        scopes: vec![closure.inputs.iter().flat_map(bound_names).collect()],
        captures: Vec::new(),
        in_format: Vec::new(),
        holder: holder.clone(),
    };
    rw.visit_expr_mut(&mut closure.body);
    if rw.captures.is_empty() {
        return closure.into_token_stream();
    }
    // Names used inside format strings read the value through a reference.
    let format_bindings: Vec<TokenStream> = rw
        .in_format
        .iter()
        .map(|name| {
            let i = syn::Index::from(rw.captures.iter().position(|c| c == name).unwrap_or(0));
            quote!(#[allow(unused_variables)] let #name = &#holder.#i;)
        })
        .collect();
    let names = &rw.captures;
    let body = &closure.body;
    let new_body: Expr = parse_quote!({
        let #holder = #values.get();
        #(#format_bindings)*
        #body
    });
    closure.body = Box::new(new_body);
    closure.capture = Some(<Token![move]>::default());
    quote!({
        let #values = ::spate::func::Captured::new((#(::core::clone::Clone::clone(&#names),)*));
        #closure
    })
}

/// The names a pattern binds (`x`, `(a, mut b)`, `Point { x, .. }`, `s @ Some(_)`).
fn bound_names(pat: &Pat) -> Vec<Ident> {
    struct Names(Vec<Ident>);
    impl VisitMut for Names {
        fn visit_pat_ident_mut(&mut self, p: &mut syn::PatIdent) {
            self.0.push(p.ident.clone());
            visit_mut::visit_pat_ident_mut(self, p);
        }
        fn visit_expr_mut(&mut self, _: &mut Expr) {}
    }
    let mut names = Names(Vec::new());
    names.visit_pat_mut(&mut pat.clone());
    names.0
}

/// Replaces each captured variable in a closure body with a read of the captured values.
struct Rewriter {
    /// Names bound inside the closure, innermost scope last.
    scopes: Vec<HashSet<Ident>>,
    /// Captured variables, in order of first use (their index in the captured tuple).
    captures: Vec<Ident>,
    /// Captured variables seen inside format strings.
    in_format: Vec<Ident>,
    /// The local holding `&(captured values…)` in the rewritten body.
    holder: Ident,
}

impl Rewriter {
    fn is_bound(&self, name: &Ident) -> bool {
        self.scopes.iter().any(|s| s.contains(name))
    }

    /// Whether `name`, used as a value here, is a variable from outside the closure.
    fn is_free(&self, name: &Ident) -> bool {
        let s = name.to_string();
        let first = s.chars().next().unwrap_or('A');
        (first.is_lowercase() || first == '_')
            && s != "_"
            && !s.starts_with("__spate")
            && !KEYWORDS.contains(&s.as_str())
            && !self.is_bound(name)
    }

    fn index_of(&mut self, name: &Ident) -> usize {
        match self.captures.iter().position(|c| c == name) {
            Some(i) => i,
            None => {
                self.captures.push(name.clone());
                self.captures.len() - 1
            }
        }
    }

    /// The expression reading captured variable `name`: a place of its type.
    fn read(&mut self, name: &Ident) -> Expr {
        let i = syn::Index::from(self.index_of(name));
        let holder = &self.holder;
        parse_quote!((#holder.#i))
    }

    fn bind(&mut self, pat: &Pat) {
        let names = bound_names(pat);
        if let Some(scope) = self.scopes.last_mut() {
            scope.extend(names);
        }
    }

    fn in_scope(&mut self, names: Vec<Ident>, f: impl FnOnce(&mut Self)) {
        self.scopes.push(names.into_iter().collect());
        f(self);
        self.scopes.pop();
    }

    /// Rewrites a macro's arguments when they parse as expressions separated by `,` or
    /// `;` (`vec![x; n]`); collects inline format arguments from its string literals.
    fn visit_macro_tokens(&mut self, mac: &mut Macro) {
        self.scan_format_strings(mac.tokens.clone());
        if let Ok(mut args) = mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            args.iter_mut().for_each(|arg| self.visit_expr_mut(arg));
            mac.tokens = args.into_token_stream();
        } else if let Ok(mut args) =
            mac.parse_body_with(Punctuated::<Expr, Token![;]>::parse_terminated)
        {
            args.iter_mut().for_each(|arg| self.visit_expr_mut(arg));
            mac.tokens = args.into_token_stream();
        }
    }

    fn scan_format_strings(&mut self, tokens: TokenStream) {
        for tt in tokens {
            match tt {
                TokenTree::Group(g) => self.scan_format_strings(g.stream()),
                TokenTree::Literal(lit) => {
                    let Ok(syn::Lit::Str(s)) = syn::parse2::<syn::Lit>(lit.into_token_stream())
                    else {
                        continue;
                    };
                    for name in inline_format_names(&s.value()) {
                        let id = Ident::new(&name, s.span());
                        if self.is_free(&id) && !self.in_format.contains(&id) {
                            self.index_of(&id);
                            self.in_format.push(id);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Names used as inline format arguments: `{name}`, `{name:?}`, `{name:>8}`.
fn inline_format_names(s: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            continue;
        }
        let end = rest.find(['}', ':']).unwrap_or(rest.len());
        let name = rest[..end].trim();
        let ident_like = name
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_alphanumeric() || c == '_');
        if ident_like {
            names.push(name.to_string());
        }
        rest = &rest[end..];
    }
    names
}

impl VisitMut for Rewriter {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        match e {
            Expr::Path(p) if p.qself.is_none() => {
                if let Some(name) = p.path.get_ident()
                    && self.is_free(name)
                {
                    let name = name.clone();
                    *e = self.read(&name);
                }
            }
            // `name(..)` calls a function; only its arguments may be captures.
            Expr::Call(call) if matches!(&*call.func, Expr::Path(p) if p.path.get_ident().is_some()) => {
                for arg in call.args.iter_mut() {
                    self.visit_expr_mut(arg);
                }
            }
            // `name = ..` (also a named format argument) is not a read.
            Expr::Assign(a) if matches!(&*a.left, Expr::Path(p) if p.path.get_ident().is_some()) => {
                self.visit_expr_mut(&mut a.right);
            }
            Expr::Closure(c) => {
                let names = c.inputs.iter().flat_map(bound_names).collect();
                self.in_scope(names, |rw| rw.visit_expr_mut(&mut c.body));
            }
            Expr::Match(m) => {
                self.visit_expr_mut(&mut m.expr);
                for arm in m.arms.iter_mut() {
                    let names = bound_names(&arm.pat);
                    self.in_scope(names, |rw| {
                        if let Some((_, guard)) = &mut arm.guard {
                            rw.visit_expr_mut(guard);
                        }
                        rw.visit_expr_mut(&mut arm.body);
                    });
                }
            }
            Expr::ForLoop(f) => {
                self.visit_expr_mut(&mut f.expr);
                let names = bound_names(&f.pat);
                self.in_scope(names, |rw| rw.visit_block_mut(&mut f.body));
            }
            // `if let`/`while let` (and let chains) bind for the block they guard.
            Expr::If(i) => {
                self.in_scope(Vec::new(), |rw| {
                    rw.visit_expr_mut(&mut i.cond);
                    rw.visit_block_mut(&mut i.then_branch);
                });
                if let Some((_, other)) = &mut i.else_branch {
                    self.visit_expr_mut(other);
                }
            }
            Expr::While(w) => self.in_scope(Vec::new(), |rw| {
                rw.visit_expr_mut(&mut w.cond);
                rw.visit_block_mut(&mut w.body);
            }),
            Expr::Let(l) => {
                self.visit_expr_mut(&mut l.expr);
                self.bind(&l.pat);
            }
            Expr::Macro(m) => self.visit_macro_tokens(&mut m.mac),
            // `S { x }` is `S { x: x }`: spell it out so `x` can be rewritten.
            Expr::Struct(s) => {
                for field in s.fields.iter_mut() {
                    if field.colon_token.is_none() {
                        field.colon_token = Some(Default::default());
                    }
                }
                visit_mut::visit_expr_struct_mut(self, s);
            }
            _ => visit_mut::visit_expr_mut(self, e),
        }
    }

    fn visit_block_mut(&mut self, block: &mut syn::Block) {
        self.in_scope(Vec::new(), |rw| {
            for stmt in block.stmts.iter_mut() {
                match stmt {
                    Stmt::Local(local) => {
                        if let Some(init) = &mut local.init {
                            rw.visit_expr_mut(&mut init.expr);
                            if let Some((_, diverge)) = &mut init.diverge {
                                rw.visit_expr_mut(diverge);
                            }
                        }
                        rw.bind(&local.pat);
                    }
                    // Items (fn, struct, …) inside the body cannot capture.
                    Stmt::Item(_) => {}
                    Stmt::Expr(e, _) => rw.visit_expr_mut(e),
                    Stmt::Macro(m) => rw.visit_macro_tokens(&mut m.mac),
                }
            }
        });
    }

    // Patterns and types hold no reads of variables.
    fn visit_pat_mut(&mut self, _: &mut Pat) {}
    fn visit_type_mut(&mut self, _: &mut syn::Type) {}
}

/// Lower-case keywords that parse as path expressions.
const KEYWORDS: &[&str] = &["crate", "super", "true", "false"];

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(src: &str) -> String {
        let closure: ExprClosure = syn::parse_str(src).expect("a closure");
        expand(closure).to_string()
    }

    #[test]
    fn captured_variables_are_read_from_the_captured_values() {
        let out = expanded("|x| *x > threshold && x.len() < limit.max(3)");
        assert!(out.contains("Captured :: new"), "{out}");
        assert!(out.contains("clone (& threshold)"), "{out}");
        assert!(out.contains("clone (& limit)"), "{out}");
        assert!(out.contains("(__spate_captured . 0)"), "{out}");
        assert!(out.contains("(__spate_captured . 1) . max"), "{out}");
        assert!(out.starts_with("{"), "{out}");
        assert!(out.contains("move |"), "{out}");
    }

    #[test]
    fn locals_parameters_functions_and_constants_are_not_captured() {
        let out = expanded(
            "|(a, b)| { let c = a + b; let d = parse(c); for e in 0..d { if let Some(g) = h(e) { return g + MAX; } } match c { n if n > 0 => n, _ => 0 } }",
        );
        assert!(!out.contains("Captured"), "{out}");
    }

    #[test]
    fn names_inside_macros_and_format_strings_are_captured() {
        let out = expanded("|x| format!(\"{}-{x}-{suffix}\", prefix)");
        assert!(out.contains("clone (& prefix)"), "{out}");
        assert!(out.contains("clone (& suffix)"), "{out}");
        assert!(!out.contains("clone (& x)"), "{out}");
        assert_eq!(
            inline_format_names("{a} {{b}} {c:?} {0} {d:>8}"),
            vec!["a", "c", "d"]
        );
    }

    #[test]
    fn struct_shorthand_and_shadowing() {
        let out = expanded("|x| { let y = Point { k, x }; let k = 1; k + y.x }");
        assert!(out.contains("k : (__spate_captured . 0)"), "{out}");
        // the later `k` is the local one
        assert!(out.contains("k + y . x"), "{out}");
    }
}
