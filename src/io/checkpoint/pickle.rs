//! A restricted unpickler for the subset of the pickle protocol that torch.save writes for a
//! state dict: an `OrderedDict` of `torch._utils._rebuild_tensor_v2(...)` calls whose
//! storages are persistent ids. Nothing is ever imported or executed: globals outside a short
//! allowlist are rejected.
//!
//! Hostile input is bounded: every push and memo store is charged against a budget, pops
//! below the current mark are errors, and containers are dropped iteratively so a deeply
//! nested structure cannot overflow the native stack.

use super::tensor::DType;
use crate::error::{Error, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Largest pickle stream accepted; a state dict of a few thousand tensors needs under 1 MiB.
pub const MAX_PICKLE_BYTES: usize = 64 << 20;
/// Pushes plus memo stores allowed in one stream, which bounds memory to a few hundred MiB.
const MAX_OPS: usize = 1 << 22;
/// Highest tensor rank accepted.
const MAX_RANK: usize = 32;

/// A storage referenced by a persistent id: `('storage', torch.FloatStorage, key, location,
/// numel)`. Its bytes live in the zip entry `<prefix>/data/<key>`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    pub dtype: DType,
    pub key: String,
    pub numel: usize,
}

/// A tensor as rebuilt by `_rebuild_tensor_v2`: a strided view into a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: Rc<StorageRef>,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    Storage(DType),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Str(Rc<str>),
    Int(i64),
}

/// Tuple, list or dict contents. Dicts store key/value pairs flattened with an index so
/// repeated keys replace the earlier value in place, as Python does.
#[derive(Default)]
struct Node {
    items: RefCell<Vec<Value>>,
    index: RefCell<HashMap<Key, usize>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let mut work = std::mem::take(self.items.get_mut());
        while let Some(v) = work.pop() {
            if let Value::Tuple(rc) | Value::List(rc) | Value::Dict(rc) = v {
                if let Ok(mut node) = Rc::try_unwrap(rc) {
                    work.append(node.items.get_mut());
                }
            }
        }
    }
}

#[derive(Clone)]
enum Value {
    None,
    Bool,
    Int(i64),
    Float,
    Str(Rc<str>),
    Bytes,
    Tuple(Rc<Node>),
    List(Rc<Node>),
    Dict(Rc<Node>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Bytes => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    fn tuple(items: Vec<Value>) -> Value {
        Value::Tuple(Rc::new(Node {
            items: RefCell::new(items),
            index: RefCell::default(),
        }))
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Pickle(msg.into()))
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    ops: usize,
}

impl<'a> Vm<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        match self.pos.checked_add(n).filter(|&e| e <= self.data.len()) {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => err(format!("stream truncated at byte {}", self.pos)),
        }
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn le<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn len_prefixed_str(&mut self, n: u64) -> Result<Value> {
        let n = usize::try_from(n).map_err(|_| Error::Pickle("string too long".into()))?;
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(Value::Str(Rc::from(s))),
            Err(_) => err(format!(
                "invalid UTF-8 in string ending at byte {}",
                self.pos
            )),
        }
    }

    fn charge(&mut self) -> Result<()> {
        self.ops += 1;
        if self.ops > MAX_OPS {
            return err(format!(
                "more than {MAX_OPS} objects; not a state dict of tensors"
            ));
        }
        Ok(())
    }
    fn push(&mut self, v: Value) -> Result<()> {
        self.charge()?;
        self.stack.push(v);
        Ok(())
    }
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }
    fn pop(&mut self) -> Result<Value> {
        if self.stack.len() <= self.floor() {
            return err(format!("stack underflow at byte {}", self.pos));
        }
        Ok(self.stack.pop().unwrap_or(Value::None))
    }
    fn top(&self) -> Result<&Value> {
        if self.stack.len() <= self.floor() {
            return err(format!("stack underflow at byte {}", self.pos));
        }
        self.stack
            .last()
            .ok_or_else(|| Error::Pickle("empty stack".into()))
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let Some(m) = self.marks.pop() else {
            return err(format!("no MARK before byte {}", self.pos));
        };
        // Pops never go below the innermost mark, so m <= len.
        Ok(self.stack.split_off(m.min(self.stack.len())))
    }
    fn memo_get(&mut self, idx: u32) -> Result<()> {
        match self.memo.get(&idx) {
            Some(v) => {
                let v = v.clone();
                self.push(v)
            }
            None => err(format!("memo entry {idx} referenced before it was stored")),
        }
    }
    fn memo_put(&mut self, idx: u32) -> Result<()> {
        self.charge()?;
        let v = self.top()?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }

    fn global(&self, module: &str, name: &str) -> Result<Value> {
        let g = match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch", "FloatStorage") => Global::Storage(DType::F32),
            ("torch", "HalfStorage") => Global::Storage(DType::F16),
            ("torch", "BFloat16Storage") => Global::Storage(DType::BF16),
            ("torch", s) if s.ends_with("Storage") => {
                return err(format!(
                    "tensor storage type torch.{s} is not supported (only float32, float16 and bfloat16)"
                ))
            }
            _ => {
                return err(format!(
                    "global {module}.{name} is not part of a plain state dict; refusing to load it"
                ))
            }
        };
        Ok(Value::Global(g))
    }

    fn set_items(&mut self, dict: &Value, kv: Vec<Value>) -> Result<()> {
        let Value::Dict(node) = dict else {
            return err(format!("SETITEM on a {}, expected a dict", dict.kind()));
        };
        if !kv.len().is_multiple_of(2) {
            return err("SETITEMS with an odd number of items");
        }
        let mut items = node.items.borrow_mut();
        let mut index = node.index.borrow_mut();
        let mut it = kv.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let key = match &k {
                Value::Str(s) => Key::Str(s.clone()),
                Value::Int(i) => Key::Int(*i),
                other => return err(format!("dict key of type {}", other.kind())),
            };
            match index.get(&key) {
                Some(&i) => items[2 * i + 1] = v,
                None => {
                    index.insert(key, items.len() / 2);
                    items.push(k);
                    items.push(v);
                }
            }
        }
        Ok(())
    }

    fn reduce(&mut self, callable: Value, args: Value) -> Result<Value> {
        let Value::Tuple(args) = args else {
            return err(format!(
                "REDUCE arguments are a {}, not a tuple",
                args.kind()
            ));
        };
        let args = args.items.borrow();
        match callable {
            Value::Global(Global::OrderedDict) => {
                if !args.is_empty() {
                    return err("OrderedDict called with arguments");
                }
                Ok(Value::Dict(Rc::default()))
            }
            Value::Global(Global::RebuildTensorV2) => rebuild_tensor(&args),
            Value::Global(Global::RebuildParameter) => match args.first() {
                Some(t @ Value::Tensor(_)) if args.len() == 3 => Ok(t.clone()),
                _ => err("_rebuild_parameter expects (tensor, requires_grad, hooks)"),
            },
            other => err(format!("cannot call a {}", other.kind())),
        }
    }

    fn persistent_load(&self, pid: Value) -> Result<Value> {
        let Value::Tuple(t) = pid else {
            return err(format!("persistent id is a {}, not a tuple", pid.kind()));
        };
        let t = t.items.borrow();
        match &t[..] {
            [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_location), Value::Int(numel)]
                if &**tag == "storage" =>
            {
                let numel = usize::try_from(*numel)
                    .map_err(|_| Error::Pickle(format!("storage `{key}` has numel {numel}")))?;
                Ok(Value::Storage(Rc::new(StorageRef {
                    dtype: *dtype,
                    key: key.to_string(),
                    numel,
                })))
            }
            _ => err("persistent id is not ('storage', <storage type>, key, location, numel)"),
        }
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if !(2..=5).contains(&proto) {
                        return err(format!("pickle protocol {proto} is not supported"));
                    }
                }
                0x95 => {
                    self.le::<8>()?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'(' => {
                    self.charge()?;
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 | 0x89 => self.push(Value::Bool)?,
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.push(Value::Int(v as i64))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.push(Value::Int(v as i64))?
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8()? as usize
                    } else {
                        let n = i32::from_le_bytes(self.le()?);
                        usize::try_from(n).map_err(|_| Error::Pickle("negative LONG4".into()))?
                    };
                    let v = long_from_bytes(self.take(n)?)?;
                    self.push(Value::Int(v))?
                }
                b'G' => {
                    self.take(8)?;
                    self.push(Value::Float)?
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.le()?) as u64;
                    let v = self.len_prefixed_str(n)?;
                    self.push(v)?
                }
                0x8c => {
                    let n = self.u8()? as u64;
                    let v = self.len_prefixed_str(n)?;
                    self.push(v)?
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.le()?);
                    let v = self.len_prefixed_str(n)?;
                    self.push(v)?
                }
                b'C' | b'B' => {
                    let n = if op == b'C' {
                        self.u8()? as usize
                    } else {
                        u32::from_le_bytes(self.le()?) as usize
                    };
                    self.take(n)?;
                    self.push(Value::Bytes)?
                }
                b')' => self.push(Value::tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::tuple(items))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::tuple(items))?
                }
                b']' => self.push(Value::List(Rc::default()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(Rc::new(Node {
                        items: RefCell::new(items),
                        index: RefCell::default(),
                    })))?
                }
                b'a' | b'e' => {
                    let new = if op == b'a' {
                        vec![self.pop()?]
                    } else {
                        self.pop_mark()?
                    };
                    match self.top()? {
                        Value::List(node) => node.items.borrow_mut().extend(new),
                        other => return err(format!("APPEND to a {}", other.kind())),
                    }
                }
                b'}' => self.push(Value::Dict(Rc::default()))?,
                b'd' => {
                    let kv = self.pop_mark()?;
                    let d = Value::Dict(Rc::default());
                    self.set_items(&d, kv)?;
                    self.push(d)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?.clone();
                    self.set_items(&d, vec![k, v])?
                }
                b'u' => {
                    let kv = self.pop_mark()?;
                    let d = self.top()?.clone();
                    self.set_items(&d, kv)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(module, name)?;
                    self.push(g)?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(m), Value::Str(n)) = (&module, &name) else {
                        return err("STACK_GLOBAL with non-string names");
                    };
                    let g = self.global(m, n)?;
                    self.push(g)?
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.push(v)?
                }
                b'b' => {
                    let state = self.pop()?;
                    match (self.top()?, &state) {
                        // An OrderedDict's instance attributes (state_dict's `_metadata`).
                        (Value::Dict(_), Value::Dict(_) | Value::None) => {}
                        (obj, _) => {
                            return err(format!(
                                "BUILD of a {} with a {} state",
                                obj.kind(),
                                state.kind()
                            ))
                        }
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v)?
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.le()?);
                    self.memo_put(i)?
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len())
                        .map_err(|_| Error::Pickle("memo overflow".into()))?;
                    self.memo_put(i)?
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.memo_get(i)?
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.le()?);
                    self.memo_get(i)?
                }
                _ => {
                    return err(format!(
                        "unsupported opcode 0x{op:02x} at byte {at} (not written by torch.save for a state dict)"
                    ))
                }
            }
        }
    }

    /// A newline-terminated ASCII argument of GLOBAL.
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let n = rest
            .iter()
            .take(256)
            .position(|&b| b == b'\n')
            .ok_or_else(|| Error::Pickle(format!("unterminated GLOBAL at byte {}", self.pos)))?;
        let s = std::str::from_utf8(&rest[..n])
            .map_err(|_| Error::Pickle("non-UTF-8 GLOBAL name".into()))?;
        self.pos += n + 1;
        Ok(s)
    }
}

/// Python's two's-complement little-endian long encoding, limited to 64 bits.
fn long_from_bytes(b: &[u8]) -> Result<i64> {
    if b.is_empty() {
        return Ok(0);
    }
    if b.len() > 8 {
        return err(format!("integer of {} bytes is out of range", b.len()));
    }
    let fill = if b[b.len() - 1] & 0x80 != 0 { 0xFF } else { 0 };
    let mut a = [fill; 8];
    a[..b.len()].copy_from_slice(b);
    Ok(i64::from_le_bytes(a))
}

fn int_tuple(v: &Value, what: &str) -> Result<Vec<usize>> {
    let Value::Tuple(t) = v else {
        return err(format!("tensor {what} is a {}, not a tuple", v.kind()));
    };
    let t = t.items.borrow();
    if t.len() > MAX_RANK {
        return err(format!("tensor {what} has rank {} > {MAX_RANK}", t.len()));
    }
    t.iter()
        .map(|x| match x {
            Value::Int(i) => usize::try_from(*i)
                .map_err(|_| Error::Pickle(format!("negative tensor {what} entry {i}"))),
            other => err(format!("tensor {what} holds a {}", other.kind())),
        })
        .collect()
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks
/// [, metadata])`.
fn rebuild_tensor(args: &[Value]) -> Result<Value> {
    if !(6..=7).contains(&args.len()) {
        return err(format!(
            "_rebuild_tensor_v2 called with {} arguments",
            args.len()
        ));
    }
    let Value::Storage(storage) = &args[0] else {
        return err("_rebuild_tensor_v2's first argument is not a storage");
    };
    let Value::Int(offset) = args[1] else {
        return err("_rebuild_tensor_v2's storage offset is not an int");
    };
    let offset = usize::try_from(offset)
        .map_err(|_| Error::Pickle(format!("negative storage offset {offset}")))?;
    let shape = int_tuple(&args[2], "size")?;
    let stride = int_tuple(&args[3], "stride")?;
    if shape.len() != stride.len() {
        return err("tensor size and stride have different lengths");
    }
    Ok(Value::Tensor(Rc::new(TensorRef {
        storage: storage.clone(),
        offset,
        shape,
        stride,
    })))
}

/// Runs the pickle and returns the state dict's tensors in their stored order.
pub fn load_state_dict(data: &[u8]) -> Result<Vec<(String, TensorRef)>> {
    if data.len() > MAX_PICKLE_BYTES {
        return err(format!(
            "data.pkl is {} bytes; a state dict's pickle is far smaller than {MAX_PICKLE_BYTES}",
            data.len()
        ));
    }
    let mut vm = Vm {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        ops: 0,
    };
    let root = vm.run()?;
    let Value::Dict(node) = root else {
        return Err(Error::Checkpoint(format!(
            "the checkpoint holds a {}, not a state dict",
            root.kind()
        )));
    };
    let items = node.items.borrow();
    let mut out = Vec::with_capacity(items.len() / 2);
    for pair in items.chunks_exact(2) {
        let name = match &pair[0] {
            Value::Str(s) => s.to_string(),
            other => {
                return Err(Error::Checkpoint(format!(
                    "state dict key of type {}",
                    other.kind()
                )))
            }
        };
        match &pair[1] {
            Value::Tensor(t) => out.push((name, TensorRef::clone(t))),
            Value::Dict(_) => {
                return Err(Error::Checkpoint(format!(
                    "entry `{name}` is a nested dict: this is a training checkpoint, not a flat \
                     state dict; save `model.state_dict()` (or checkpoint[\"{name}\"]) with torch.save"
                )))
            }
            other => {
                return Err(Error::Checkpoint(format!(
                    "state dict entry `{name}` is a {}, not a tensor",
                    other.kind()
                )))
            }
        }
    }
    Ok(out)
}
