#!/usr/bin/env python3
"""Generates Sources/PulseGateFIT/FITProfile.generated.swift from Garmin's FIT SDK profile.

The FIT protocol is generic (definitions say how many bytes a field has); what a field *means*
(number, base type, scale, offset, units, components) lives in the SDK's profile. pulsegate maps a
handful of messages, so it generates a typed subset from the official Python SDK instead of typing
constants by hand: upgrading the profile is `pip install -U garmin-fit-sdk` and a re-run.

Usage:
    .build/e2e-venv/bin/python scripts/gen_fit_profile.py            # writes the Swift file
    .build/e2e-venv/bin/python scripts/gen_fit_profile.py --check    # exits 1 if it is stale

Needs `pip install garmin-fit-sdk` (Tests/e2e/requirements.txt lists it). When `swift` is on PATH
the output is run through `swift format` so it passes `swift format lint --strict` as written.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version as package_version
from pathlib import Path

from garmin_fit_sdk import fit
from garmin_fit_sdk.profile import Profile

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "Sources/PulseGateFIT/FITProfile.generated.swift"

# The messages pulsegate maps or needs to decode others, in the order they appear in the file.
MESSAGES = [
    "file_id",
    "file_creator",
    "device_info",
    "record",
    "lap",
    "session",
    "event",
    "hrv",
    "hr",
    "monitoring",
    "timestamp_correlation",
    "developer_data_id",
    "field_description",
]

# Enumerations whose names pulsegate shows: (profile type, Swift function name, doc).
NAME_TABLES = [
    ("manufacturer", "manufacturerName", "The `manufacturer` name for an id (file_id, device_info, developer_data_id)."),
    ("garmin_product", "garminProductName",
     "The `garmin_product` name for a product id, valid when ``usesGarminProduct(manufacturer:)`` says so."),
    ("antplus_device_type", "antplusDeviceTypeName", "ANT+ device profile names (device_info.device_type, source ANT+)."),
    ("ble_device_type", "bleDeviceTypeName", "BLE device type names (device_info.device_type, source BLE)."),
    ("local_device_type", "localDeviceTypeName", "Built-in sensor names (device_info.device_type, source local)."),
    ("source_type", "sourceTypeName", "How a device_info's device is connected (ANT, ANT+, BLE, local)."),
]

SWIFT_KEYWORDS = {
    "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import", "init",
    "inout", "internal", "let", "open", "operator", "private", "protocol", "public", "rethrows", "static",
    "struct", "subscript", "typealias", "var", "break", "case", "continue", "default", "defer", "do",
    "else", "fallthrough", "for", "guard", "if", "in", "repeat", "return", "switch", "where", "while",
    "as", "Any", "catch", "false", "is", "nil", "super", "self", "Self", "throw", "throws", "true", "try",
}


def camel(name: str, upper: bool = False) -> str:
    parts = [p for p in re.split(r"[_\W]+", name) if p]
    # Acronyms keep one case, as Swift's API guidelines ask (`applicationID`, not `applicationId`).
    out = parts[0].lower() + "".join("ID" if p == "id" else p[:1].upper() + p[1:] for p in parts[1:])
    if upper:
        out = out[:1].upper() + out[1:]
    if out[:1].isdigit():
        out = "_" + out
    if out in SWIFT_KEYWORDS:
        out = f"`{out}`"
    return out


def type_name(message: str) -> str:
    special = {"file_id": "FileID", "hrv": "HRV", "hr": "HR", "developer_data_id": "DeveloperDataID"}
    return special.get(message, camel(message, upper=True))


def swift_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def number(v) -> str:
    v = float(v)
    return repr(int(v)) if v.is_integer() else repr(v)


def units_of(units, index=0) -> str:
    if isinstance(units, list):
        return units[index] if index < len(units) else ""
    return units or ""


def base_type_case(name: str) -> str:
    return {"enum": "enumeration", "string": "string", "byte": "byte"}.get(name, name)


def field_decl(message: dict, field: dict) -> list[str]:
    base = base_type_case(field["base_type"])
    scale = field["scale"][0] if field["scale"] else 1
    offset = field["offset"][0] if field["offset"] else 0
    comps = []
    for i, target in enumerate(field["components"]):
        bits = field["bits"][i]
        c_scale = field["scale"][i] if i < len(field["scale"]) else 1
        c_offset = field["offset"][i] if i < len(field["offset"]) else 0
        target_field = message["fields"][target]
        comps.append(
            f".init(target: {target}, bits: {bits}, scale: {number(c_scale)}, offset: {number(c_offset)}, "
            f"accumulate: {'true' if target_field['is_accumulated'] else 'false'})"
        )
    # A field with components stores its own scale in the first component; its value as a whole is
    # only meaningful when there is exactly one component (speed, altitude).
    if len(field["components"]) > 1:
        scale, offset = 1, 0
    args = [
        f"number: {field['num']}",
        f"name: {swift_string(field['name'])}",
        f"baseType: .{base}",
        f"scale: {number(scale)}",
        f"offset: {number(offset)}",
        f"units: {swift_string(units_of(field['units']))}",
        f"isArray: {'true' if field['array'] == 'true' else 'false'}",
        f"isAccumulated: {'true' if field['is_accumulated'] else 'false'}",
    ]
    if comps:
        args.append("components: [" + ", ".join(comps) + "]")
    lines = [f"        /// `{field['name']}` ({field['type']})" + (f", {units_of(field['units'])}" if units_of(field['units']) else "")]
    lines.append(f"        public static let {camel(field['name'])} = FITField(" + ", ".join(args) + ")")
    return lines


def generate() -> str:
    sdk_version = package_version("garmin-fit-sdk")
    pv = Profile["version"]
    profile_version = f"{pv['major']}.{pv['minor']}.{pv['patch']} {pv['type']}"
    mesg_num = Profile["mesg_num"]
    out: list[str] = []
    w = out.append
    w(f"// Generated by scripts/gen_fit_profile.py from garmin-fit-sdk {sdk_version} "
      f"(FIT profile {profile_version}). Do not edit:")
    w("// change the script or upgrade the SDK and re-run it.")
    w("")
    w("/// The part of Garmin's FIT profile pulsegate uses: one namespace per mapped message, one ``FITField``")
    w("/// per field (number, base type, scale, offset, units, components), and the name tables that turn")
    w("/// manufacturer, product and sensor ids into words.")
    w("public enum FITProfile {")
    w("    /// The garmin-fit-sdk release this file was generated from.")
    w(f"    public static let sdkVersion = {swift_string(sdk_version)}")
    w("    /// The FIT profile version of that release.")
    w(f"    public static let profileVersion = {swift_string(profile_version)}")
    w("")
    for name in MESSAGES:
        key = name.upper()
        num = mesg_num[key]
        message = Profile["messages"][num]
        w(f"    /// `{name}` (global message {num}).")
        w(f"    public enum {type_name(name)} {{")
        w("        /// The global message number.")
        w(f"        public static let messageNumber: UInt16 = {num}")
        names = [camel(f["name"]) for f in message["fields"].values()]
        assert "messageNumber" not in names and len(set(names)) == len(names), f"name clash in {name}"
        for field in sorted(message["fields"].values(), key=lambda f: f["num"]):
            out.extend(field_decl(message, field))
        w("    }")
        w("")

    # timestamp_16 lives in several messages; the decoder resolves it for any of them.
    ts16 = sorted(
        (num, f["num"])
        for num, m in Profile["messages"].items()
        for f in m["fields"].values()
        if f["name"] == "timestamp_16"
    )
    w("    /// The field number of `timestamp_16` in a message that has one (a 16-bit offset from the last full")
    w("    /// timestamp), `nil` for all others.")
    w("    public static func timestamp16Field(message: UInt16) -> UInt8? {")
    w("        switch message {")
    for num, field in ts16:
        w(f"        case {num}: {field}")
    w("        default: nil")
    w("        }")
    w("    }")
    w("")

    # garmin_product applies to file_id/device_info.product for these manufacturers.
    product = Profile["messages"][mesg_num["FILE_ID"]]["fields"][2]
    garmin = sorted(
        {m["raw_value"] for s in product["sub_fields"] if s["name"] == "garmin_product" for m in s["map"]}
    )
    w("    /// Whether `product` is a `garmin_product` for this manufacturer (Garmin, Dynastream, Tacx, …).")
    w("    public static func usesGarminProduct(manufacturer: UInt16) -> Bool {")
    w("        switch manufacturer {")
    w("        case " + ", ".join(str(g) for g in garmin) + ": true")
    w("        default: false")
    w("        }")
    w("    }")
    for type_key, func, doc in NAME_TABLES:
        table = Profile["types"][type_key]
        w("")
        w(f"    /// {doc}")
        w(f"    public static func {func}(_ id: UInt16) -> String? {{")
        w("        switch id {")
        for value, label in sorted(table.items()):
            w(f"        case {value}: {swift_string(label)}")
        w("        default: nil")
        w("        }")
        w("    }")
    w("}")
    w("")

    # Base types come from the SDK too, so invalid sentinels are the SDK's.
    names = Profile["types"]["fit_base_type"]
    w("/// A FIT base type: the byte in a field definition (endian-capable types carry bit 7).")
    w("public enum FITBaseType: UInt8, Sendable, CaseIterable {")
    for code, label in sorted(names.items(), key=lambda kv: kv[0] & 0x1F):
        w(f"    case {base_type_case(label)} = {code:#04x}")
    w("")
    w("    /// Bytes per element.")
    w("    public var size: Int {")
    w("        switch self {")
    by_size: dict[int, list[str]] = {}
    for code, label in names.items():
        by_size.setdefault(fit.BASE_TYPE_DEFINITIONS[code & 0x1F]["size"], []).append(base_type_case(label))
    for size in sorted(by_size):
        w(f"        case {', '.join('.' + n for n in sorted(by_size[size]))}: {size}")
    w("        }")
    w("    }")
    w("")
    w("    /// The element's bit pattern that means \"no value\" (little-endian, zero-extended).")
    w("    public var invalid: UInt64 {")
    w("        switch self {")
    for code, label in sorted(names.items(), key=lambda kv: kv[0] & 0x1F):
        inv = fit.BASE_TYPE_DEFINITIONS[code & 0x1F]["invalid"]
        if label == "float64":
            inv = (1 << 64) - 1
        w(f"        case .{base_type_case(label)}: {inv:#x}")
    w("        }")
    w("    }")
    w("")
    w("    /// Whether elements are two's-complement signed integers.")
    w("    public var isSigned: Bool {")
    w("        switch self {")
    signed = sorted(base_type_case(l) for c, l in names.items() if l.startswith("sint"))
    w(f"        case {', '.join('.' + n for n in signed)}: true")
    w("        default: false")
    w("        }")
    w("    }")
    w("")
    w("    /// The base type's name in the profile.")
    w("    public var name: String {")
    w("        switch self {")
    for code, label in sorted(names.items(), key=lambda kv: kv[0] & 0x1F):
        w(f"        case .{base_type_case(label)}: {swift_string(label)}")
    w("        }")
    w("    }")
    w("}")
    return "\n".join(out) + "\n"


def formatted(text: str) -> str:
    swift = shutil.which("swift")
    if swift is None:
        return text
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / OUTPUT.name
        path.write_text(text)
        config = ROOT / ".swift-format"
        args = [swift, "format", "--in-place"]
        if config.exists():
            args += ["--configuration", str(config)]
        subprocess.run(args + [str(path)], check=True)
        return path.read_text()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed file is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    text = formatted(generate())
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run scripts/gen_fit_profile.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {os.path.relpath(args.output, Path.cwd())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
