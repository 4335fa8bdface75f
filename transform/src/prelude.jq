# adoport's prelude: definitions that make jaq answer as jq does for what users write in
# port-app-configs. Each one is measured against the `jq` binary by
# tests/jq_differential.rs; remaining, deliberate differences are listed in the README.
# Loaded after jaq's own definitions: a definition here replaces jaq's of the same name
# (the jaq version is kept under a `_jaq_` name where ours needs it).

# `env` is `$ENV`: the process environment without its secrets when
# OCEAN__ALLOW_ENVIRONMENT_VARIABLES_JQ_ACCESS is true (Ocean's default), else an empty object
# (see `Prelude` in jq.rs and adoport_shared::config::JqEnvironment).
def env: $ENV;

def _jaq_ltrimstr($s): ltrimstr($s);
def _jaq_rtrimstr($s): rtrimstr($s);
def _jaq_indices($i): indices($i);
def _jaq_contains($b): contains($b);

# libjq (the Python integration's jq) fails when the input or the argument is not a string,
# with these messages.
def ltrimstr($s):
  if type == "string" and ($s | type) == "string" then _jaq_ltrimstr($s)
  else error("startswith() requires string inputs") end;
def rtrimstr($s):
  if type == "string" and ($s | type) == "string" then _jaq_rtrimstr($s)
  else error("endswith() requires string inputs") end;

# jq: null elements join as "", numbers and booleans as their JSON text, anything else fails.
def join($x):
  reduce .[] as $i (null;
    (if . == null then "" else . + $x end)
    + ($i | if . == null then "" elif type == "string" then .
            elif type == "boolean" or type == "number" then tojson else . end))
  // "";

# jq: `null | indices(x)` is null.
def indices($i): if . == null then null else _jaq_indices($i) end;
def index($i): indices($i) | .[0];
def rindex($i): indices($i) | .[-1:][0];

# jq refuses to compare containment of values of different kinds (true and false are kinds).
def contains($b):
  if type == ($b | type) and (type != "boolean" or . == $b) then _jaq_contains($b)
  else error("\(type) (\(tojson)) and \($b | type) (\($b | tojson)) cannot have their containment checked")
  end;
def inside(xs): . as $x | xs | contains($x);

# jq parses the whole string as one number; jaq's `fromjson` stops after the first value.
def tonumber:
  if type == "number" then .
  elif type == "string" then
    (try [fromjson] catch null) as $n
    | if ($n | length) == 1 and ($n[0] | type) == "number" then $n[0]
      else error("Cannot parse '\(.)' as JSON") end
  else error("\(type) (\(tojson)) cannot be parsed as a number")
  end;

# `tojson` is ours (`jq/text.rs`): numbers are written as libjq writes them (`3.0` read stays
# `3.0`, a computed `6 / 2` is `3`, `1e17` computed is `1e+17`).
def @json: tojson;

def tostring: if type == "string" then . else tojson end;

# jq keeps the order of an object's other keys when one is deleted; jaq moves its last key
# into the gap. Deleting object keys is done here; what jaq does in the same order as jq
# (array elements, slices, errors) is left to it.
def _jaq_delpaths($ps): delpaths($ps);
def _adoport_delpath($p):
  if ($p | length) == 0 or type == "null" then null
  else $p[0] as $k
    | if type == "object" and ($k | type) != "string" then
        error("Cannot delete field at index \($k | tojson) of object")
      elif type == "object" then
        if ($p | length) == 1 then with_entries(select(.key != $k))
        elif has($k) then .[$k] |= _adoport_delpath($p[1:])
        else . end
      elif type == "array" and ($k | type) == "number" and ($k >= length or $k < -length) then .
      elif type == "array" and ($k | type) == "number" and ($p | length) > 1 then
        .[$k] |= _adoport_delpath($p[1:])
      else _jaq_delpaths([$p]) end
  end;
def delpaths($ps): reduce ($ps | sort | reverse)[] as $p (.; _adoport_delpath($p));
def del(f): delpaths([path(f)]);

# Missing in jaq.
def IN(s): any(s == .; .);
def IN(src; s): any(src == s; .);
def tostream: path(def r: (.[]? | r), .; r) as $p | getpath($p) | reduce path(.[]?) as $q ([$p, .]; [$p + $q]);
def @csv:
  if type != "array" then error("\(type) (\(tojson)) cannot be csv-formatted, only an array can be") end
  | map(
      if type == "number" then tostring
      elif type == "string" then "\"" + gsub("\""; "\"\"") + "\""
      elif type == "boolean" then tostring
      elif type == "null" then ""
      else error("\(type) (\(tojson)) is not valid in a csv row") end)
  | join(",");
def @tsv:
  if type != "array" then error("\(type) (\(tojson)) cannot be tsv-formatted, only an array can be") end
  | map(
      if type == "string" then gsub("\\\\"; "\\\\") | gsub("\t"; "\\t") | gsub("\n"; "\\n") | gsub("\r"; "\\r")
      elif type == "number" or type == "boolean" then tostring
      elif type == "null" then ""
      else error("\(type) (\(tojson)) is not valid in a tsv row") end)
  | join("\t");
