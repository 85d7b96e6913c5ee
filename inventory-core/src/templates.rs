//! The confirmation email's wording: subject, plain text and HTML from templates
//! ([minijinja](https://docs.rs/minijinja), Jinja2 syntax).
//!
//! The defaults are the kit's own wording; a shop passes its own (name, wording, language) to
//! [`Templates::new`], or an operator points `MAIL_TEMPLATE_DIR` at a folder with
//! `subject.txt`, `body.txt` and `body.html` ([`Templates::from_dir`]). Templates are checked
//! when they are loaded, by rendering a sample order, so a typo stops the program at start-up
//! instead of failing every send. In `body.html` every value is HTML-escaped.
//!
//! The variables: `lines` (each with `product_name`, `product_id` and `quantity`), `order_id`,
//! `recipient`, `notification_id`; and for templates written for one product (such as the
//! original's), `product_name` and `product_id` (of every line, joined by `, `) and
//! `quantity` (all lines' units): for a one-line order, exactly that line's. The address verification email has its own three
//! (`verify_subject.txt`, `verify_body.txt`, `verify_body.html`) with `recipient` and `code`.
//!
//! The original service's wording, as a folder for `MAIL_TEMPLATE_DIR`:
//!
//! ```
//! use inventory_core::{Email, Lines, NewOrder, ProductId, Quantity, Templates};
//!
//! let templates = Templates::new(
//!     "New order for product {{ product_name }}",
//!     "A new order was placed for {{ product_name }} ({{ product_id }}) by {{ recipient }}.",
//!     "<p>A new order was placed for <b>{{ product_name }}</b> by {{ recipient }}.</p>",
//! )?;
//! let order = NewOrder::new(
//!     uuid::Uuid::now_v7(),
//!     Email::parse("ann@example.com")?,
//!     Lines::one(ProductId::new("tea")?, Quantity::new(1)?),
//! );
//! let email = templates.render(&order.notification(|_| "Tea <green>".into()))?;
//! assert_eq!(email.subject, "New order for product Tea <green>");
//! assert!(email.html.contains("Tea &lt;green&gt;"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;
use std::sync::{Arc, OnceLock};

use minijinja::{AutoEscape, Environment, UndefinedBehavior, context};

use crate::domain::{Message, Notification};
use crate::error::{Error, MailError, Result};
use crate::ports::OutgoingEmail;

const SUBJECT: &str = "subject.txt";
const TEXT: &str = "body.txt";
const HTML: &str = "body.html";
const VERIFY_SUBJECT: &str = "verify_subject.txt";
const VERIFY_TEXT: &str = "verify_body.txt";
const VERIFY_HTML: &str = "verify_body.html";

const DEFAULT_SUBJECT: &str = "Order confirmed: {{ lines[0].product_name }}\
{% if lines|length > 1 %} and {{ lines|length - 1 }} more{% endif %}";
const DEFAULT_TEXT: &str = "Thank you for your order.

{% for line in lines %}Product:  {{ line.product_name }} ({{ line.product_id }})
Quantity: {{ line.quantity }}
{% endfor %}Order id: {{ order_id }}
";
const DEFAULT_HTML: &str = r#"<!DOCTYPE html>
<html><body>
<p>Thank you for your order.</p>
<table>
{% for line in lines %}<tr><th align="left">Product</th><td>{{ line.product_name }} ({{ line.product_id }})</td></tr>
<tr><th align="left">Quantity</th><td>{{ line.quantity }}</td></tr>
{% endfor %}<tr><th align="left">Order id</th><td>{{ order_id }}</td></tr>
</table>
</body></html>
"#;

const DEFAULT_VERIFY_SUBJECT: &str = "Confirm your email address";
const DEFAULT_VERIFY_TEXT: &str =
    "Please confirm that {{ recipient }} is your address with this code:

{{ code }}

It expires in 24 hours. If you did not ask for it, ignore this email.
";
const DEFAULT_VERIFY_HTML: &str = r#"<!DOCTYPE html>
<html><body>
<p>Please confirm that {{ recipient }} is your address with this code:</p>
<p><code>{{ code }}</code></p>
<p>It expires in 24 hours. If you did not ask for it, ignore this email.</p>
</body></html>
"#;

/// The templates of the confirmation email (and of the address verification email),
/// compiled and checked.
#[derive(Clone, Debug)]
pub struct Templates {
    env: Arc<Environment<'static>>,
}

impl Default for Templates {
    /// The kit's own wording.
    fn default() -> Self {
        static DEFAULT: OnceLock<Templates> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                Templates::new(DEFAULT_SUBJECT, DEFAULT_TEXT, DEFAULT_HTML)
                    .expect("the default templates are valid")
            })
            .clone()
    }
}

impl Templates {
    /// Compiles and checks a subject, a plain-text and an HTML template of the order
    /// confirmation (the verification email keeps its default wording). A syntax error or an
    /// unknown variable is [`Error::InvalidInput`] naming the template.
    pub fn new(
        subject: impl Into<String>,
        text: impl Into<String>,
        html: impl Into<String>,
    ) -> Result<Self> {
        Self::with_verification(
            subject,
            text,
            html,
            [
                DEFAULT_VERIFY_SUBJECT,
                DEFAULT_VERIFY_TEXT,
                DEFAULT_VERIFY_HTML,
            ]
            .map(String::from),
        )
    }

    /// [`Templates::new`] with the verification email's subject, text and HTML too
    /// (variables `recipient` and `code`).
    pub fn with_verification(
        subject: impl Into<String>,
        text: impl Into<String>,
        html: impl Into<String>,
        [verify_subject, verify_text, verify_html]: [String; 3],
    ) -> Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        for (name, source) in [
            (SUBJECT, subject.into()),
            (TEXT, text.into()),
            (HTML, html.into()),
            (VERIFY_SUBJECT, verify_subject),
            (VERIFY_TEXT, verify_text),
            (VERIFY_HTML, verify_html),
        ] {
            env.add_template_owned(name, source)
                .map_err(|e| Error::invalid("template", format!("{name}: {e}")))?;
        }
        let templates = Templates { env: Arc::new(env) };
        templates.check()?;
        Ok(templates)
    }

    /// Loads `subject.txt`, `body.txt` and `body.html` from a folder (`MAIL_TEMPLATE_DIR`);
    /// a file that is missing keeps the default wording for that part.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::invalid(
                "MAIL_TEMPLATE_DIR",
                format!("{} is not a folder", dir.display()),
            ));
        }
        let read = |name: &str, default: &str| -> Result<String> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(source) => Ok(source),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(default.to_owned()),
                Err(e) => Err(Error::invalid(
                    "MAIL_TEMPLATE_DIR",
                    format!("{}: {e}", path.display()),
                )),
            }
        };
        Templates::with_verification(
            read(SUBJECT, DEFAULT_SUBJECT)?,
            read(TEXT, DEFAULT_TEXT)?,
            read(HTML, DEFAULT_HTML)?,
            [
                read(VERIFY_SUBJECT, DEFAULT_VERIFY_SUBJECT)?,
                read(VERIFY_TEXT, DEFAULT_VERIFY_TEXT)?,
                read(VERIFY_HTML, DEFAULT_VERIFY_HTML)?,
            ],
        )
    }

    /// Renders a sample order, so that an unknown variable or a failing filter is found now.
    fn check(&self) -> Result<()> {
        let sample = context! {
            lines => vec![context! {
                product_name => "Sample product",
                product_id => "sample-1",
                quantity => 1,
            }],
            product_name => "Sample product",
            product_id => "sample-1",
            quantity => 1,
            order_id => "00000000-0000-0000-0000-000000000000",
            recipient => "buyer@example.com",
            notification_id => "00000000-0000-0000-0000-000000000000",
        };
        let verification = context! {
            recipient => "buyer@example.com",
            code => "sample-code",
        };
        for (names, ctx) in [
            ([SUBJECT, TEXT, HTML], &sample),
            ([VERIFY_SUBJECT, VERIFY_TEXT, VERIFY_HTML], &verification),
        ] {
            for name in names {
                self.env
                    .get_template(name)
                    .and_then(|t| t.render(ctx))
                    .map_err(|e| Error::invalid("template", format!("{name}: {e}")))?;
            }
        }
        Ok(())
    }

    /// The email of a notification: the order confirmation or the address verification.
    /// The `Message-ID` derives from the notification id; control characters in the product
    /// name (stored before they were refused, or by another writer) become U+FFFD, and the
    /// subject is one line.
    pub fn render(&self, n: &Notification) -> std::result::Result<OutgoingEmail, MailError> {
        let (names, ctx) = match &n.message {
            Message::OrderConfirmation { order_id, lines } => {
                let lines: Vec<_> = lines
                    .iter()
                    .map(|l| {
                        let product_name: String = l
                            .product_name
                            .chars()
                            .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
                            .collect();
                        (product_name, l.product_id.as_str(), l.quantity.get())
                    })
                    .collect();
                let names: Vec<&str> = lines.iter().map(|l| l.0.as_str()).collect();
                let ids: Vec<&str> = lines.iter().map(|l| l.1).collect();
                (
                    [SUBJECT, TEXT, HTML],
                    context! {
                        product_name => names.join(", "),
                        product_id => ids.join(", "),
                        quantity => lines.iter().map(|l| l.2).sum::<u64>(),
                        lines => lines
                            .iter()
                            .map(|(product_name, product_id, quantity)| context! {
                                product_name, product_id, quantity,
                            })
                            .collect::<Vec<_>>(),
                        order_id => order_id.to_string(),
                        recipient => n.recipient.as_str(),
                        notification_id => n.id.to_string(),
                    },
                )
            }
            Message::EmailVerification { code, .. } => (
                [VERIFY_SUBJECT, VERIFY_TEXT, VERIFY_HTML],
                context! {
                    recipient => n.recipient.as_str(),
                    code => code.as_str(),
                },
            ),
        };
        let render = |name: &str| {
            self.env
                .get_template(name)
                .and_then(|t| t.render(&ctx))
                .map_err(|e| MailError::Permanent(format!("template {name}: {e}")))
        };
        let subject: String = render(names[0])?
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Ok(OutgoingEmail {
            message_id: format!("{}@inventory-kit", n.id),
            to: n.recipient.clone(),
            subject: subject.trim().to_owned(),
            text: render(names[1])?,
            html: render(names[2])?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;

    fn notification(name: &str) -> Notification {
        NewOrder::new(
            uuid::Uuid::now_v7(),
            Email::parse("ann@example.com").unwrap(),
            Lines::one(ProductId::new("p-1").unwrap(), Quantity::new(2).unwrap()),
        )
        .notification(|_| name.to_owned())
    }

    #[test]
    fn mistakes_are_found_when_loading_not_when_sending() {
        let syntax = Templates::new("{{ product_name", "", "").unwrap_err();
        assert!(syntax.to_string().contains("subject.txt"), "{syntax}");
        let unknown = Templates::new("ok", "{{ prodcut_name }}", "").unwrap_err();
        assert!(unknown.to_string().contains("body.txt"), "{unknown}");
    }

    #[test]
    fn html_is_escaped_text_is_not_and_the_subject_is_one_line() {
        let t = Templates::new(
            "{{ product_name }}\nBcc: x@evil.example",
            "{{ product_name }}",
            "<b>{{ product_name }}</b>",
        )
        .unwrap();
        let email = t.render(&notification("<script>&")).unwrap();
        assert_eq!(email.html, "<b>&lt;script&gt;&amp;</b>");
        assert_eq!(email.text, "<script>&");
        assert!(!email.subject.contains('\n'), "{:?}", email.subject);
    }

    #[test]
    fn a_folder_overrides_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("subject.txt"),
            "Neue Bestellung: {{ product_name }}",
        )
        .unwrap();
        let t = Templates::from_dir(dir.path()).unwrap();
        let email = t.render(&notification("Tee")).unwrap();
        assert_eq!(email.subject, "Neue Bestellung: Tee");
        assert!(email.text.contains("Quantity: 2"), "default body kept");
        std::fs::write(dir.path().join("body.html"), "{% if %}").unwrap();
        assert!(Templates::from_dir(dir.path()).is_err());
        assert!(Templates::from_dir(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_basket_lists_every_line_and_one_product_templates_see_them_all() {
        let lines = Lines::new(vec![
            OrderLine {
                product_id: ProductId::new("tea").unwrap(),
                quantity: Quantity::new(2).unwrap(),
            },
            OrderLine {
                product_id: ProductId::new("cup").unwrap(),
                quantity: Quantity::ONE,
            },
        ])
        .unwrap();
        let n = NewOrder::new(
            uuid::Uuid::now_v7(),
            Email::parse("ann@example.com").unwrap(),
            lines,
        )
        .notification(|id| format!("Name of {id}"));
        let email = Templates::default().render(&n).unwrap();
        assert_eq!(email.subject, "Order confirmed: Name of tea and 1 more");
        for wanted in [
            "Product:  Name of tea (tea)\nQuantity: 2\n",
            "Product:  Name of cup (cup)\nQuantity: 1\n",
        ] {
            assert!(email.text.contains(wanted), "{wanted:?} in {}", email.text);
        }
        assert!(email.html.contains("Name of cup (cup)"), "{}", email.html);
        // A template written for one product (the original's wording).
        let original = Templates::new(
            "New order for product {{ product_name }}",
            "{{ product_id }} x {{ quantity }}",
            "",
        )
        .unwrap();
        let email = original.render(&n).unwrap();
        assert_eq!(
            email.subject,
            "New order for product Name of tea, Name of cup"
        );
        assert_eq!(email.text, "tea, cup x 3");
    }
}
