//! What lineage says and what it is told: taints, the lineage of a statement, and
//! the caller's view of relations ([`Relations`]).

/// Where a value may come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Taint {
    /// The first mask (by index) of a masked column it comes from.
    pub mask: Option<u16>,
    /// Computed from masked data rather than being it.
    pub derived: bool,
    /// The analysis could not tell.
    pub unknown: bool,
    /// Clean because it is a column of a table created earlier in the same message
    /// that provably holds nothing masked: the catalog does not know its OID yet.
    pub fresh: bool,
}

impl Taint {
    pub const CLEAN: Taint = Taint {
        mask: None,
        derived: false,
        unknown: false,
        fresh: false,
    };
    pub const UNKNOWN: Taint = Taint {
        mask: None,
        derived: true,
        unknown: true,
        fresh: false,
    };
    /// A column of a table made earlier in the message (see [`Taint::fresh`]).
    pub const FRESH: Taint = Taint {
        mask: None,
        derived: false,
        unknown: false,
        fresh: true,
    };

    pub fn direct(mask: u16) -> Taint {
        Taint {
            mask: Some(mask),
            derived: false,
            unknown: false,
            fresh: false,
        }
    }

    pub fn is_clean(&self) -> bool {
        self.mask.is_none() && !self.unknown
    }

    #[must_use]
    pub fn join(self, o: Taint) -> Taint {
        let mask = match (self.mask, o.mask) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Taint {
            mask,
            derived: (self.derived && !self.is_clean()) || (o.derived && !o.is_clean()),
            unknown: self.unknown || o.unknown,
            fresh: self.fresh && o.fresh,
        }
    }

    /// The taint of a value computed from this one.
    #[must_use]
    pub fn derive(self) -> Taint {
        if self.is_clean() {
            self
        } else {
            Taint {
                derived: true,
                fresh: false,
                ..self
            }
        }
    }
}

/// What the catalog knows of a relation named in SQL.
#[derive(Debug, Clone)]
pub enum Relation {
    /// Its columns in order (dropped ones left out), each with its taint.
    Known(Vec<(String, Taint)>),
    /// A system relation with nothing masked.
    System,
    /// Something that may expose masked values wholesale (planner statistics).
    Sensitive,
    /// Not in the catalog.
    Unknown,
}

pub trait Relations {
    fn relation(&self, schema: Option<&str>, name: &str) -> Relation;
    /// The taint of calling a function (a user function whose body reads masked
    /// columns, or whose body cannot be analysed).
    fn function(&self, name: &str) -> Taint;
    /// The taint of a user-defined operator's functions (bare or `schema.name`).
    fn operator(&self, _name: &str) -> Taint {
        Taint::CLEAN
    }
    /// The taint of user-defined casts to a type (its bare name).
    fn cast(&self, _ty: &str) -> Taint {
        Taint::CLEAN
    }
    /// Whether calling it runs code of a user's (which may open or close cursors).
    fn runs_user_code(&self, _name: &str) -> bool {
        false
    }
    /// Whether a user-defined operator of that name exists (its function runs).
    fn operator_runs_code(&self, _name: &str) -> bool {
        false
    }
    /// Whether a user-defined cast to that type exists (its function runs).
    fn cast_runs_code(&self, _ty: &str) -> bool {
        false
    }
    /// What calling a function of this bare name the catalog knows gives (any of
    /// them, in any schema, temporary ones of any session included), or None when
    /// there is none: a call of a function the message made may reach one of those
    /// instead (an overload, an earlier one on the search path).
    fn function_named(&self, _bare: &str) -> Option<Taint> {
        None
    }
    /// Whether calling it may create, replace or rename relations (DDL in its body, or
    /// a body that cannot be read): a later statement's names may then reach them.
    fn may_make_relations(&self, name: &str) -> bool {
        self.runs_user_code(name)
    }
    /// Whether calling it may keep values where masking never sees them again: a table
    /// its body writes, a notification, a setting, a sequence, a lock key (or a body
    /// that cannot be read). Such a call given masked data launders it.
    fn may_store(&self, name: &str) -> bool {
        self.runs_user_code(name)
    }
    /// The taint of what writing a relation runs (its defaults, generated columns,
    /// checks and triggers): values it reads end up in the rows written.
    fn write_taint(&self, _schema: Option<&str>, _name: &str) -> Taint {
        Taint::CLEAN
    }
    /// What reading (`write`: writing) a relation runs of its row-level security
    /// policies (through a view, those of the tables it reads).
    fn policies(&self, _schema: Option<&str>, _name: &str, _write: bool) -> Runs {
        Runs::default()
    }
    /// What a table's policies would run on a write once row-level security is
    /// enabled on it (it is not): an ALTER TABLE of it may enable them.
    fn dormant_policies(&self, _schema: Option<&str>, _name: &str) -> Runs {
        Runs::default()
    }
}

/// Code a read or write of a relation runs besides the statement's own: its
/// row-level security policies, over its rows (review s36 F9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Runs {
    /// What that code refers to: an error it raises may quote it (a cast failing
    /// on a masked value).
    pub refers: Taint,
    /// What it may keep where masks no longer apply (a table its functions write):
    /// clean when nothing.
    pub keeps: Taint,
}

impl Runs {
    /// Code pgmoat cannot read or trace.
    pub const UNKNOWN: Runs = Runs {
        refers: Taint::UNKNOWN,
        keeps: Taint::UNKNOWN,
    };

    pub fn join(self, o: Runs) -> Runs {
        Runs {
            refers: self.refers.join(o.refers),
            keeps: self.keeps.join(o.keeps),
        }
    }
}

/// Columns every table has that the catalog's column lists leave out (`t.xmin`).
pub(super) const SYSTEM_COLUMNS: &[&str] = &["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"];

/// A name a statement gives to something later statements use.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Named {
    Prepared(String),
    Cursor(String),
}

/// One statement's lineage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    /// Per output column; None when the shape cannot be told.
    pub outputs: Option<Vec<Taint>>,
    /// Everything masked the statement refers to anywhere.
    pub touched: Taint,
    /// It would write masked values somewhere readable (CTAS, INSERT ... SELECT,
    /// UPDATE ... SET, COPY TO a file or program): why.
    pub launders: Option<String>,
    /// PREPARE / DECLARE: `outputs` are those of the named statement.
    pub defines: Option<Named>,
    /// EXECUTE / FETCH: the rows are those of this name.
    pub uses: Option<Named>,
    /// It names a relation the catalog does not know (created since it was read?).
    pub unknown_relation: bool,
    /// COPY ... TO STDOUT (masked data in it is refused, not rewritten); `true` when
    /// in binary format.
    pub copy_out: Option<bool>,
    /// It may close or open cursors pgmoat does not see (CLOSE, DISCARD, DO, CALL, a
    /// user function): names known so far may no longer be what they were.
    pub forgets_cursors: bool,
}
