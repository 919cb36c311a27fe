-- sockets.lua: Wireshark dissector for the "application" protocol of the
-- socket-programming guide, as spoken by `sockets app-server` and
-- `sockets app-client` (specification: docs/PROTOCOL.md).
--
-- Wire format of one message, repeated back to back on a TCP stream:
--
--   +--------+----------------------+----------------------+
--   | H (2)  | JSON header (H bytes)| content (C bytes)    |
--   +--------+----------------------+----------------------+
--   H: unsigned 16-bit big-endian; C: the header's "content-length".
--
-- The dissector registers on TCP port 65432 (preference "sockets.tcp_port")
-- and as a heuristic TCP dissector. It reassembles messages that span TCP
-- segments and decodes several messages carried in one segment.
--
-- Install: copy to ~/.local/lib/wireshark/plugins/ or load it with
--   tshark -X lua_script:sockets.lua ...
--
-- Requires Wireshark 3.x or 4.x (Lua 5.1/5.2 API; no Lua 5.3 operators).

local sockets = Proto("sockets", "Sockets Application Protocol")

local DEFAULT_PORT = 65432
local HEUR_MAX_HEADER = 32767          -- heuristic: plausible header lengths
local INFO_MAX_BYTES = 60              -- strings in the Info column are cut here

---------------------------------------------------------------------------
-- Fields
---------------------------------------------------------------------------

local hf = {
    message_length   = ProtoField.uint32("sockets.message_length", "Message Length", base.DEC, nil, nil,
                                         "Whole message: 2 + header length + content length"),
    kind             = ProtoField.string("sockets.kind", "Kind",
                                         "request or response (from the content, else from the direction)"),
    header_length    = ProtoField.uint16("sockets.header_length", "Header Length", base.DEC, nil, nil,
                                         "Length of the JSON header (2-byte big-endian proto-header)"),
    header           = ProtoField.string("sockets.header", "JSON Header", "The JSON header text"),
    byteorder        = ProtoField.string("sockets.byteorder", "Byte Order", "Header key \"byteorder\""),
    content_type     = ProtoField.string("sockets.content_type", "Content-Type", "Header key \"content-type\""),
    content_encoding = ProtoField.string("sockets.content_encoding", "Content-Encoding",
                                         "Header key \"content-encoding\""),
    content_length   = ProtoField.uint64("sockets.content_length", "Content-Length", base.DEC, nil, nil,
                                         "Header key \"content-length\""),
    content          = ProtoField.bytes("sockets.content", "Content", base.NONE, "The content bytes"),
    content_text     = ProtoField.string("sockets.content_text", "Content Text",
                                         "text/json content, decoded with its content-encoding"),
    action           = ProtoField.string("sockets.action", "Action", "JSON request key \"action\""),
    value            = ProtoField.string("sockets.value", "Value", "JSON request key \"value\""),
    result           = ProtoField.string("sockets.result", "Result", "JSON response key \"result\""),
    undecoded        = ProtoField.bytes("sockets.undecoded", "Undecoded Data", base.NONE,
                                        "Bytes after a framing error: where the next message starts is unknown"),
}
sockets.fields = {
    hf.message_length, hf.kind, hf.header_length, hf.header, hf.byteorder, hf.content_type,
    hf.content_encoding, hf.content_length, hf.content, hf.content_text, hf.action, hf.value,
    hf.result, hf.undecoded,
}

---------------------------------------------------------------------------
-- Expert info
---------------------------------------------------------------------------

local G, S = expert.group, expert.severity
local ef = {
    bad_header_length  = ProtoExpert.new("sockets.bad_header_length", "Implausible header length",
                                         G.MALFORMED, S.ERROR),
    header_not_json    = ProtoExpert.new("sockets.header_not_json", "JSON header is not valid JSON",
                                         G.MALFORMED, S.ERROR),
    header_not_utf8    = ProtoExpert.new("sockets.header_not_utf8", "JSON header is not valid UTF-8",
                                         G.MALFORMED, S.ERROR),
    header_not_object  = ProtoExpert.new("sockets.header_not_object", "JSON header is not an object",
                                         G.MALFORMED, S.ERROR),
    no_content_length  = ProtoExpert.new("sockets.no_content_length", "JSON header lacks \"content-length\"",
                                         G.MALFORMED, S.ERROR),
    bad_content_length = ProtoExpert.new("sockets.bad_content_length",
                                         "\"content-length\" is not a non-negative integer",
                                         G.MALFORMED, S.ERROR),
    missing_key        = ProtoExpert.new("sockets.missing_key", "JSON header lacks a required key",
                                         G.PROTOCOL, S.WARN),
    bad_header_value   = ProtoExpert.new("sockets.bad_header_value", "Bad value for a header key",
                                         G.PROTOCOL, S.WARN),
    duplicate_key      = ProtoExpert.new("sockets.duplicate_key", "Required header key appears twice",
                                         G.PROTOCOL, S.WARN),
    content_too_large  = ProtoExpert.new("sockets.content_too_large",
                                         "content-length above the dissector's reassembly limit",
                                         G.UNDECODED, S.WARN),
    bad_encoding       = ProtoExpert.new("sockets.bad_encoding", "Unsupported content-encoding for text/json",
                                         G.PROTOCOL, S.WARN),
    content_not_text   = ProtoExpert.new("sockets.content_not_decodable",
                                         "Content does not decode in its content-encoding",
                                         G.PROTOCOL, S.WARN),
    content_not_json   = ProtoExpert.new("sockets.content_not_json", "text/json content is not valid JSON",
                                         G.PROTOCOL, S.WARN),
    content_not_object = ProtoExpert.new("sockets.content_not_object", "text/json content is not a JSON object",
                                         G.PROTOCOL, S.WARN),
    bad_request        = ProtoExpert.new("sockets.bad_request", "Malformed search request",
                                         G.PROTOCOL, S.WARN),
    error_result       = ProtoExpert.new("sockets.error_result", "Server answered with an error",
                                         G.RESPONSE_CODE, S.NOTE),
    framing_lost       = ProtoExpert.new("sockets.framing_lost",
                                         "Framing lost: the rest of this segment is not decoded",
                                         G.MALFORMED, S.WARN),
    truncated          = ProtoExpert.new("sockets.truncated", "Message truncated in the capture",
                                         G.MALFORMED, S.WARN),
}
sockets.experts = {
    ef.bad_header_length, ef.header_not_json, ef.header_not_utf8, ef.header_not_object,
    ef.no_content_length, ef.bad_content_length, ef.missing_key, ef.bad_header_value,
    ef.duplicate_key, ef.content_too_large, ef.bad_encoding, ef.content_not_text,
    ef.content_not_json, ef.content_not_object, ef.bad_request, ef.error_result,
    ef.framing_lost, ef.truncated,
}

---------------------------------------------------------------------------
-- Preferences
---------------------------------------------------------------------------

sockets.prefs.tcp_port = Pref.uint("TCP port", DEFAULT_PORT,
    "TCP port of the application server (0 = none; the heuristic dissector still works)")
sockets.prefs.max_content = Pref.uint("Reassembly limit (bytes)", 16 * 1024 * 1024,
    "Largest content-length the dissector waits for; larger messages are flagged and not reassembled")
sockets.prefs.heuristic = Pref.bool("Heuristic dissector", true,
    "Also look for the protocol on other TCP ports")

---------------------------------------------------------------------------
-- A small, defensive JSON parser (RFC 8259).
--
-- Objects become {kind="object", map={}, pos={}, count={}, order={}},
-- arrays {kind="array", items={}}, numbers {kind="number", text=...},
-- null the NULL sentinel; strings and booleans are Lua values. Strings are
-- unescaped to UTF-8 (\uXXXX and surrogate pairs included; a lone surrogate
-- becomes U+FFFD). For the members of an object, pos[key] is {first, last},
-- the 1-based byte range of the member's value in the text. Errors are raised
-- as tables {json_error=msg, at=position}; json_decode catches them.
---------------------------------------------------------------------------

local NULL = setmetatable({}, { __tostring = function() return "null" end })
local MAX_DEPTH = 100

local function jfail(msg, at)
    error({ json_error = msg, at = at }, 0)
end

local function utf8_encode(cp)
    if cp < 0x80 then
        return string.char(cp)
    elseif cp < 0x800 then
        return string.char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40)
    elseif cp < 0x10000 then
        return string.char(0xE0 + math.floor(cp / 0x1000), 0x80 + math.floor(cp / 0x40) % 0x40,
                           0x80 + cp % 0x40)
    else
        return string.char(0xF0 + math.floor(cp / 0x40000), 0x80 + math.floor(cp / 0x1000) % 0x40,
                           0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
    end
end

local function skip_ws(s, i)
    return (s:find("[^ \t\r\n]", i)) or (#s + 1)
end

local SIMPLE_ESCAPES = { ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f',
                         n = '\n', r = '\r', t = '\t' }

local function read_hex4(s, i)
    local h = s:sub(i, i + 3)
    if not h:match("^%x%x%x%x$") then jfail("bad \\u escape", i) end
    return tonumber(h, 16)
end

-- s:sub(i, i) is the opening quote; returns the string and the index after it.
local function parse_string(s, i)
    local parts = {}
    local j = i + 1
    while true do
        local k = s:find('[%z\1-\31"\\]', j)
        if not k then jfail("unterminated string", i) end
        if k > j then parts[#parts + 1] = s:sub(j, k - 1) end
        local c = s:sub(k, k)
        if c == '"' then
            return table.concat(parts), k + 1
        elseif c == '\\' then
            local e = s:sub(k + 1, k + 1)
            if SIMPLE_ESCAPES[e] then
                parts[#parts + 1] = SIMPLE_ESCAPES[e]
                j = k + 2
            elseif e == 'u' then
                local cp = read_hex4(s, k + 2)
                j = k + 6
                if cp >= 0xD800 and cp <= 0xDBFF then
                    local lo = s:match("^\\u(%x%x%x%x)", j)
                    lo = lo and tonumber(lo, 16)
                    if lo and lo >= 0xDC00 and lo <= 0xDFFF then
                        cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
                        j = j + 6
                    else
                        cp = 0xFFFD                 -- lone high surrogate
                    end
                elseif cp >= 0xDC00 and cp <= 0xDFFF then
                    cp = 0xFFFD                     -- lone low surrogate
                end
                parts[#parts + 1] = utf8_encode(cp)
            else
                jfail("bad escape", k)
            end
        else
            jfail("control character in string", k)
        end
    end
end

local parse_value

local function parse_number(s, i)
    local m = s:match("^-?%d+", i)
    if not m then jfail("unexpected character", i) end
    if m:match("^-?0%d") then jfail("leading zero in number", i) end
    local j = i + #m
    local frac = s:match("^%.%d+", j)
    if frac then j = j + #frac elseif s:sub(j, j) == "." then jfail("bad number", j) end
    local exp = s:match("^[eE][-+]?%d+", j)
    if exp then j = j + #exp elseif s:match("^[eE]", j) then jfail("bad number", j) end
    local text = s:sub(i, j - 1)
    return { kind = "number", text = text, value = tonumber(text) }, j
end

local function parse_object(s, i, depth)
    local obj = { kind = "object", map = {}, pos = {}, count = {}, order = {} }
    i = skip_ws(s, i + 1)
    if s:sub(i, i) == "}" then return obj, i + 1 end
    while true do
        if s:sub(i, i) ~= '"' then jfail("expected a key", i) end
        local key
        key, i = parse_string(s, i)
        i = skip_ws(s, i)
        if s:sub(i, i) ~= ":" then jfail("expected ':'", i) end
        i = skip_ws(s, i + 1)
        local vstart = i
        local v
        v, i = parse_value(s, i, depth + 1)
        obj.count[key] = (obj.count[key] or 0) + 1
        if obj.count[key] == 1 then obj.order[#obj.order + 1] = key end
        obj.map[key] = v                   -- the last duplicate wins, as in Python
        obj.pos[key] = { vstart, i - 1 }
        i = skip_ws(s, i)
        local c = s:sub(i, i)
        if c == "}" then return obj, i + 1 end
        if c ~= "," then jfail("expected ',' or '}'", i) end
        i = skip_ws(s, i + 1)
    end
end

local function parse_array(s, i, depth)
    local arr = { kind = "array", items = {} }
    i = skip_ws(s, i + 1)
    if s:sub(i, i) == "]" then return arr, i + 1 end
    while true do
        local v
        v, i = parse_value(s, i, depth + 1)
        arr.items[#arr.items + 1] = v
        i = skip_ws(s, i)
        local c = s:sub(i, i)
        if c == "]" then return arr, i + 1 end
        if c ~= "," then jfail("expected ',' or ']'", i) end
        i = skip_ws(s, i + 1)
    end
end

parse_value = function(s, i, depth)
    if depth > MAX_DEPTH then jfail("nested too deeply", i) end
    local c = s:sub(i, i)
    if c == "{" then return parse_object(s, i, depth)
    elseif c == "[" then return parse_array(s, i, depth)
    elseif c == '"' then return parse_string(s, i)
    elseif c == "" then jfail("unexpected end of text", i)
    elseif s:sub(i, i + 3) == "true" then return true, i + 4
    elseif s:sub(i, i + 4) == "false" then return false, i + 5
    elseif s:sub(i, i + 3) == "null" then return NULL, i + 4
    else return parse_number(s, i)
    end
end

-- Returns value (nil on error), error message.
local function json_decode(s)
    local ok, v, i = pcall(function()
        local i0 = skip_ws(s, 1)
        local v, i = parse_value(s, i0, 0)
        i = skip_ws(s, i)
        if i <= #s then jfail("trailing characters", i) end
        return v, i
    end)
    if ok then return v, nil end
    if type(v) == "table" and v.json_error then
        return nil, string.format("%s at byte %d", v.json_error, v.at or 0)
    end
    return nil, "parser failure: " .. tostring(v)      -- should not happen
end

-- Decode bytes as UTF-8, each invalid byte becoming U+FFFD. Returns the
-- text and whether the input was valid. (TvbRange:string() is not used for
-- text whose decoded length can differ from its byte length: some Wireshark
-- versions cut the result at the byte length.)
local REPLACEMENT = "\239\191\189"
local function utf8_sanitize(s)
    if not s:find("[\128-\255]") then return s, true end
    local out, i, n, ok = {}, 1, #s, true
    while i <= n do
        local j = s:find("[\128-\255]", i)
        if not j then
            out[#out + 1] = s:sub(i)
            break
        end
        if j > i then out[#out + 1] = s:sub(i, j - 1) end
        local c = s:byte(j)
        local len
        if c >= 0xC2 and c <= 0xDF then len = 2
        elseif c >= 0xE0 and c <= 0xEF then len = 3
        elseif c >= 0xF0 and c <= 0xF4 then len = 4
        end
        local good = len ~= nil and j + len - 1 <= n
        if good then
            for k = 1, len - 1 do
                local b = s:byte(j + k)
                if b < 0x80 or b > 0xBF then good = false break end
            end
        end
        if good then
            local b1 = s:byte(j + 1)
            if (c == 0xE0 and b1 < 0xA0) or (c == 0xED and b1 > 0x9F) or
               (c == 0xF0 and b1 < 0x90) or (c == 0xF4 and b1 > 0x8F) then
                good = false                    -- overlong form, surrogate, above U+10FFFF
            end
        end
        if good then
            out[#out + 1] = s:sub(j, j + len - 1)
            i = j + len
        else
            out[#out + 1] = REPLACEMENT
            ok = false
            i = j + 1
        end
    end
    return table.concat(out), ok
end

-- Decode content bytes in one of the encodings of PROTOCOL.md section 3.3.
local function decode_text(raw, enc)
    if enc == "utf-8" then return utf8_sanitize(raw) end
    if enc == "ascii" then
        local bad = raw:find("[\128-\255]") ~= nil
        return (raw:gsub("[\128-\255]", REPLACEMENT)), not bad
    end
    -- latin-1: every byte is the code point of the same value
    return (raw:gsub("[\128-\255]", function(c) return utf8_encode(c:byte()) end)), true
end

-- Short JSON-ish description of a value, for expert info texts.
local function describe(v)
    if v == nil then return "nothing" end
    if v == NULL then return "null" end
    local t = type(v)
    if t == "string" then return '"' .. v .. '"' end
    if t == "boolean" then return tostring(v) end
    if v.kind == "number" then return v.text end
    if v.kind == "array" then return "an array" end
    return "an object"
end

---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

-- Cut a UTF-8 string to at most n bytes on a character boundary.
local function utf8_cut(s, n)
    if #s <= n then return s end
    local p = n + 1
    while p > 1 do
        local b = s:byte(p)
        if b < 0x80 or b >= 0xC0 then break end
        p = p - 1
    end
    return s:sub(1, p - 1) .. "…"
end

-- Text for the Info column: control characters shown as JSON escapes.
local CTRL_ESC = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ["\b"] = "\\b", ["\f"] = "\\f" }
local function info_text(s)
    s = utf8_cut(s, INFO_MAX_BYTES)
    return (s:gsub("[%z\1-\31]", function(c)
        return CTRL_ESC[c] or string.format("\\u%04x", c:byte())
    end))
end

-- Exact decimal text to UInt64 (the value can be up to 2^64-1).
local function decimal_to_uint64(text)
    local u = UInt64(0)
    for d in text:gmatch("%d") do u = u * 10 + tonumber(d) end
    return u
end

-- Normalize a content-encoding name as docs/PROTOCOL.md section 3.3 does;
-- returns "utf-8", "ascii", "latin-1", or nil when unsupported.
local function text_encoding(name)
    if name == "utf-8" then return "utf-8" end
    local n = name:gsub("^%s+", ""):gsub("%s+$", ""):lower():gsub("_", "-")
    if n == "utf-8" or n == "utf8" or n == "u8" then return "utf-8" end
    if n == "ascii" or n == "us-ascii" then return "ascii" end
    if n == "latin-1" or n == "latin1" or n == "iso-8859-1" or n == "iso8859-1" then
        return "latin-1"
    end
    return nil
end

-- Per-TCP-stream memory of which endpoint is the client (the sender of the
-- first message seen), used to label binary messages. Reset on each new file.
local tcp_stream_f = Field.new("tcp.stream")
local stream_client = {}
function sockets.init()
    stream_client = {}
end

local function direction(pinfo)
    local port = sockets.prefs.tcp_port
    if port ~= 0 then
        if pinfo.dst_port == port then return "request" end
        if pinfo.src_port == port then return "response" end
    end
    local st = tcp_stream_f()
    if not st then return nil end
    local key = tostring(st.value)
    local me = tostring(pinfo.src) .. ":" .. tostring(pinfo.src_port)
    local first = stream_client[key]
    if not first then
        first = { ep = me, frame = pinfo.number }
        stream_client[key] = first
    end
    return (first.ep == me) and "request" or "response"
end

---------------------------------------------------------------------------
-- Message parsing (no tree) and display
---------------------------------------------------------------------------

-- Parse the JSON header text; returns a table describing it. Never raises.
local function parse_header(raw, text)
    local h = { raw = raw, text = text, utf8_ok = (raw == text), problems = {} }
    local obj, err = json_decode(text)
    if not obj then
        h.fatal = { ef.header_not_json, "JSON header is not valid JSON: " .. err }
        return h
    end
    if type(obj) ~= "table" or obj.kind ~= "object" then
        h.fatal = { ef.header_not_object, "JSON header is not an object (got " .. describe(obj) .. ")" }
        return h
    end
    h.obj = obj
    local cl = obj.map["content-length"]
    if cl == nil or cl == NULL then
        h.fatal = { ef.no_content_length, 'JSON header lacks required key "content-length"' }
    elseif type(cl) ~= "table" or cl.kind ~= "number" or not cl.text:match("^%d+$") then
        h.fatal = { ef.bad_content_length,
                    'JSON header key "content-length" must be a non-negative integer, got ' .. describe(cl) }
    else
        local t = cl.text
        if #t > 20 or (#t == 20 and t > "18446744073709551615") then
            h.fatal = { ef.bad_content_length,
                        'JSON header key "content-length" is above 2^64-1: ' .. utf8_cut(t, 40) }
        else
            h.clen_text = t
            h.clen_u64 = decimal_to_uint64(t)
            h.clen = tonumber(t)                   -- a double: exact up to 2^53
        end
    end
    for _, key in ipairs({ "byteorder", "content-type", "content-encoding", "content-length" }) do
        local v = obj.map[key]
        if v == nil or v == NULL then
            if key ~= "content-length" then
                h.problems[#h.problems + 1] = { ef.missing_key, 'JSON header lacks required key "' .. key .. '"' }
            end
        elseif key ~= "content-length" and type(v) ~= "string" then
            h.problems[#h.problems + 1] = { ef.bad_header_value,
                'JSON header key "' .. key .. '" must be a string, got ' .. describe(v) }
        end
        if (obj.count[key] or 0) > 1 then
            h.problems[#h.problems + 1] = { ef.duplicate_key, 'JSON header key "' .. key .. '" appears twice' }
        end
    end
    local bo = obj.map["byteorder"]
    if type(bo) == "string" and bo ~= "little" and bo ~= "big" then
        h.problems[#h.problems + 1] = { ef.bad_header_value,
            'JSON header key "byteorder" must be "little" or "big", got "' .. utf8_cut(bo, 200) .. '"' }
    end
    if type(obj.map["content-type"]) == "string" then h.ctype = obj.map["content-type"] end
    if type(obj.map["content-encoding"]) == "string" then h.cenc = obj.map["content-encoding"] end
    if type(bo) == "string" then h.byteorder = bo end
    return h
end

-- Range of a top-level member's value inside `range`, when byte positions in
-- the decoded text match the wire bytes; else the whole range.
local function member_range(range, exact, obj, key)
    local p = exact and obj.pos[key]
    if p and p[2] >= p[1] and p[2] <= range:len() then
        return range:range(p[1] - 1, p[2] - p[1] + 1)
    end
    return range
end

local function add_header_tree(tree, hrange, h)
    local item = tree:add(hf.header, hrange, h.text)
    if not h.utf8_ok then
        item:add_proto_expert_info(ef.header_not_utf8, "JSON header is not valid UTF-8")
    end
    if h.obj then
        local exact = h.utf8_ok
        if h.byteorder then item:add(hf.byteorder, member_range(hrange, exact, h.obj, "byteorder"), h.byteorder) end
        if h.ctype then item:add(hf.content_type, member_range(hrange, exact, h.obj, "content-type"), h.ctype) end
        if h.cenc then
            item:add(hf.content_encoding, member_range(hrange, exact, h.obj, "content-encoding"), h.cenc)
        end
        if h.clen_u64 then
            item:add(hf.content_length, member_range(hrange, exact, h.obj, "content-length"), h.clen_u64)
        end
        for _, p in ipairs(h.problems) do item:add_proto_expert_info(p[1], p[2]) end
    end
    if h.fatal then item:add_proto_expert_info(h.fatal[1], h.fatal[2]) end
    return item
end

-- Show the text/json content. Returns the summary for the Info column.
local function add_json_content(tree, crange, h, dir)
    local enc = text_encoding(h.cenc or "")
    local summary
    if not enc then
        tree:add_proto_expert_info(ef.bad_encoding,
            'unsupported content-encoding "' .. utf8_cut(h.cenc or "(none)", 200) ..
            '" for text/json content (decoded as UTF-8 here)')
        enc = "utf-8"
    end
    local raw = (crange:len() > 0) and crange:raw() or ""
    local text, ok_text = decode_text(raw, enc)
    local titem = tree:add(hf.content_text, crange, text)
    if not ok_text then
        titem:add_proto_expert_info(ef.content_not_text,
            "content does not decode as " .. utf8_cut(h.cenc or "utf-8", 200) .. " (invalid bytes shown as U+FFFD)")
    end
    local exact = (raw == text)
    local obj, err = json_decode(text)
    if not obj then
        titem:add_proto_expert_info(ef.content_not_json, "text/json content is not valid JSON: " .. err)
        return dir, string.format("Invalid JSON content (%d bytes)", #raw)
    end
    if type(obj) ~= "table" or obj.kind ~= "object" then
        titem:add_proto_expert_info(ef.content_not_object,
            "text/json content must be a JSON object, got " .. utf8_cut(describe(obj), 200))
        return dir, "JSON " .. info_text(describe(obj))
    end
    local m = obj.map
    local kind
    if m.result ~= nil then
        kind = "response"
        if type(m.result) == "string" then
            titem:add(hf.result, member_range(crange, exact, obj, "result"), m.result)
            summary = 'Response "' .. info_text(m.result) .. '"'
            if m.result:sub(1, 7) == "Error: " then
                titem:add_proto_expert_info(ef.error_result, utf8_cut(m.result, 200))
            end
        else
            titem:add_proto_expert_info(ef.bad_request, '"result" must be a string, got ' .. describe(m.result))
            summary = "Response (result " .. info_text(describe(m.result)) .. ")"
        end
    elseif m.action ~= nil or m.value ~= nil then
        kind = "request"
        local a, v = m.action, m.value
        if type(a) == "string" then
            titem:add(hf.action, member_range(crange, exact, obj, "action"), a)
        else
            titem:add_proto_expert_info(ef.bad_request,
                (a == nil or a == NULL) and 'request has no "action"' or
                ("action must be a string, got " .. describe(a)))
        end
        if type(v) == "string" then
            titem:add(hf.value, member_range(crange, exact, obj, "value"), v)
        else
            titem:add_proto_expert_info(ef.bad_request,
                (v == nil or v == NULL) and 'search request has no "value"' or
                ("search value must be a string, got " .. describe(v)))
        end
        summary = "Request " .. (type(a) == "string" and info_text(a) or "(no action)") ..
                  (type(v) == "string" and (' "' .. info_text(v) .. '"') or "")
    else
        kind = dir
        summary = "JSON " .. info_text(text)
    end
    return kind, summary
end

-- Try to frame one message at `offset`. Returns:
--   "ok", consumed, summary        a whole message was shown
--   "need", bytes_needed           more bytes are needed (reassembly)
--   "fatal", summary               framing lost; the rest of tvb was shown
local function dissect_message(tvb, pinfo, tree, offset)
    local avail = tvb:len() - offset
    if avail < 2 then return "need", DESEGMENT_ONE_MORE_SEGMENT end
    local hlen = tvb(offset, 2):uint()

    local function fatal(item_text, expert_f, expert_text)
        local sub = tree:add(sockets, tvb(offset), "Sockets Application Protocol, " .. item_text)
        sub:add(hf.header_length, tvb(offset, 2))
        if avail > 2 then
            sub:add(hf.undecoded, tvb(offset + 2)):add_proto_expert_info(expert_f, expert_text)
        else
            sub:add_proto_expert_info(expert_f, expert_text)
        end
        return "fatal", item_text
    end

    -- Cheap sanity checks before waiting for a possibly huge header.
    if hlen == 0 then
        return fatal("Bad header length 0", ef.bad_header_length,
                     "header length 0: an empty JSON header is not valid JSON")
    end
    local have = math.min(hlen, avail - 2)
    if have > 0 then
        local first = tvb:raw(offset + 2, have):match("^[ \t\r\n]*(.)")
        if first and first ~= "{" then
            return fatal(string.format("Bad header (length %d, not a JSON object)", hlen),
                         ef.header_not_json,
                         string.format("header length %d, but the header does not start with '{' (0x%02x): " ..
                                       "not this protocol, or the stream is out of step", hlen, first:byte()),
                         true)
        end
    end
    if avail < 2 + hlen then
        if tvb:len() < tvb:reported_len() then       -- cut by the snapshot length
            return fatal("Truncated", ef.truncated, "message cut short by the capture's snapshot length")
        end
        return "need", 2 + hlen - avail
    end

    local hrange = tvb(offset + 2, hlen)
    local hraw = hrange:raw()
    local h = parse_header(hraw, (utf8_sanitize(hraw)))
    local clen_ok = (h.clen ~= nil and not h.fatal)
    local limit = sockets.prefs.max_content
    if clen_ok and h.clen <= limit and avail < 2 + hlen + h.clen then
        if tvb:len() < tvb:reported_len() then
            return fatal("Truncated", ef.truncated, "message cut short by the capture's snapshot length")
        end
        return "need", 2 + hlen + h.clen - avail
    end

    -- Display: a whole message, or a header after which framing is lost.
    local total = clen_ok and (2 + hlen + h.clen) or (2 + hlen)
    local shown = math.min(total, avail)
    local sub = tree:add(sockets, tvb(offset, shown))
    sub:add(hf.header_length, tvb(offset, 2))
    add_header_tree(sub, hrange, h)

    if not clen_ok then
        local text = h.fatal and h.fatal[2] or "bad header"
        sub:append_text(", Bad header")
        if avail > 2 + hlen then
            sub:add(hf.undecoded, tvb(offset + 2 + hlen)):add_proto_expert_info(ef.framing_lost,
                "framing lost after a header without a usable content-length")
            sub:set_len(avail)
        end
        return "fatal", "Bad header: " .. info_text(text)
    end

    if h.clen > limit then
        local present = avail - 2 - hlen
        local it = sub:add(hf.content, tvb(offset + 2 + hlen, present))
        it:add_proto_expert_info(ef.content_too_large,
            string.format("content-length %s is above the reassembly limit of %d bytes " ..
                          "(preference sockets.max_content); %d bytes shown", h.clen_text, limit, present))
        sub:set_len(avail)
        sub:append_text(string.format(", Content too large (%s bytes)", h.clen_text))
        return "fatal", string.format("Content too large (%s bytes)", h.clen_text)
    end

    local dir = direction(pinfo)
    sub:add(hf.message_length, total):set_generated()
    local crange = tvb(offset + 2 + hlen, h.clen)         -- a zero length range is fine
    sub:add(hf.content, crange)
    local kind, summary
    if h.ctype == "text/json" then
        kind, summary = add_json_content(sub, crange, h, dir)
    else
        kind = dir
        summary = string.format("Binary %d bytes (%s)", h.clen, info_text(h.ctype or "no content-type"))
    end
    if kind then sub:add(hf.kind, kind):set_generated() end
    sub:append_text(", " .. summary)
    return "ok", total, summary
end

local function dissect_stream(tvb, pinfo, tree)
    local len = tvb:len()
    local offset = 0
    local summaries = {}
    while offset < len do
        local status, a, b = dissect_message(tvb, pinfo, tree, offset)
        if status == "ok" then
            summaries[#summaries + 1] = b
            offset = offset + a
        elseif status == "need" then
            local can = pinfo.can_desegment
            if can == 0 or can == false then
                -- TCP reassembly is off: show what there is, flagged
                local have = len - offset
                local it = tree:add(sockets, tvb(offset), "Sockets Application Protocol, Incomplete message")
                it:add(hf.undecoded, tvb(offset)):add_proto_expert_info(ef.truncated,
                    string.format("%d bytes of a message that continues in later segments " ..
                                  "(enable TCP's \"Allow subdissector to reassemble TCP streams\")", have))
                summaries[#summaries + 1] = "Incomplete message"
            else
                pinfo.desegment_offset = offset
                pinfo.desegment_len = a
            end
            break
        else -- fatal
            summaries[#summaries + 1] = a
            break
        end
    end
    if #summaries > 0 then
        local info = table.concat(summaries, " | ")
        -- TCP may call us more than once for one frame (a reassembled PDU,
        -- then the rest of the segment): append rather than overwrite.
        if tostring(pinfo.cols.protocol) == "SOCKETS" then
            pinfo.cols.info:append(" | " .. info)
        else
            pinfo.cols.protocol = "SOCKETS"
            pinfo.cols.info = info
        end
    end
    return len
end

function sockets.dissector(tvb, pinfo, tree)
    return dissect_stream(tvb, pinfo, tree)
end

---------------------------------------------------------------------------
-- Heuristic: 2-byte length in 1..32767, then (after optional whitespace) a
-- '{', and "content-length" within the header bytes at hand.
---------------------------------------------------------------------------

local function heuristic(tvb, pinfo, tree)
    if not sockets.prefs.heuristic then return false end
    local len = tvb:len()
    if len < 3 then return false end
    local hlen = tvb(0, 2):uint()
    if hlen < 1 or hlen > HEUR_MAX_HEADER then return false end
    local head = tvb:raw(2, math.min(hlen, len - 2))
    if not head:match("^[ \t\r\n]*{") then return false end
    if not head:find('"content-length"', 1, true) then return false end
    pinfo.conversation = sockets          -- later segments of this connection come to us
    dissect_stream(tvb, pinfo, tree)
    return true
end

sockets:register_heuristic("tcp", heuristic)

---------------------------------------------------------------------------
-- Port registration (follows the preference)
---------------------------------------------------------------------------

local tcp_port_table = DissectorTable.get("tcp.port")
local registered_port = 0

local function register_port()
    local port = sockets.prefs.tcp_port
    if port == registered_port then return end
    if registered_port ~= 0 then tcp_port_table:remove(registered_port, sockets) end
    if port ~= 0 then tcp_port_table:add(port, sockets) end
    registered_port = port
end

function sockets.prefs_changed()
    register_port()
end

register_port()
