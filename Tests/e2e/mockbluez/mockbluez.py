#!/usr/bin/python3
"""A test-only bluetoothd: `org.bluez` on a private bus, following BlueZ's documented D-Bus API
(doc/org.bluez.Adapter.rst, Device.rst, GattService.rst, GattCharacteristic.rst, GattDescriptor.rst),
not any one client, so a backend that works here works for the same reasons against bluetoothd.

What it exports, as bluetoothd does:
- `/` : org.freedesktop.DBus.ObjectManager (GetManagedObjects, InterfacesAdded, InterfacesRemoved).
- `/org/bluez/hci0` : org.bluez.Adapter1 (SetDiscoveryFilter, StartDiscovery, StopDiscovery,
  RemoveDevice, GetDiscoveryFilters). Discovery sessions are per client, filters are merged across
  clients, a client's sessions end when it leaves the bus.
- `/org/bluez/hci0/dev_XX_…` : org.bluez.Device1 (Connect, Disconnect, Pair, CancelPairing). Devices
  already known to bluetoothd are exported at start without RSSI; the others appear
  (InterfacesAdded) once a discovery whose merged filter matches them runs. Connect sets Connected,
  replies, then exports the GATT tree (InterfacesAdded per object) and sets ServicesResolved.
- `…/serviceXXXX` (GattService1), `…/charYYYY` (GattCharacteristic1: ReadValue, WriteValue,
  StartNotify, StopNotify; notify sessions per client, Notifying true while any is open) and
  `…/descZZZZ` (GattDescriptor1, the CCCD). No NotifyAcquired, so clients use StartNotify.
- Every object also lists org.freedesktop.DBus.Properties and Introspectable, as bluetoothd does.

Devices (the `--scenario` is fixed; tests drive it):
- AA:BB:CC:DD:EE:01 "HRM Mock": a heart-rate strap, advertises 180d; services 180d (2a37 notify,
  2a38 read), 180f (2a19 read+notify, 85 %), 180a (2a29/2a24/2a25/2a26). Known before discovery.
- AA:BB:CC:DD:EE:02 "Power Mock": a power meter, advertises 1818; services 1818 (2a63 notify, 2a65,
  2a5d), 180f (2a19 read only, 64 %), 180a (2a29, 2a24). Found by discovery.
- AA:BB:CC:DD:EE:03 "Keyboard Mock": advertises only 1812 (HID): only a filter without UUIDs finds it.

Control: one command per line on stdin; each answers `ok …` or `error …` on stdout. Every D-Bus
method call received is logged as `call <Member> <address or path> [detail]`, and state changes as
`event …`, so a test can wait for them. Commands:
  notify ADDR UUID16 HEX     a notification (PropertiesChanged Value) if the characteristic notifies
  set ADDR UUID16 HEX        change a characteristic's value without notifying
  drop ADDR                  the link drops (ServicesResolved false, GATT objects removed, Connected false)
  remove ADDR                out of range: drop if connected, then bluetoothd forgets it (InterfacesRemoved)
  appear ADDR                back in range: found again by a running discovery
  rssi ADDR N                a new advert with RSSI N
  refuse ADDR N              the next N Connect calls fail with org.bluez.Error.Failed
  other-client-discovery     another client starts discovery without a filter (filters merge)
  vanish                     bluetoothd exits (name released, objects gone, no signals)
  restart                    bluetoothd starts again (known devices only, nothing connected)
  quit
End of stdin also quits, so a crashed test leaves no mock behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import dbus
import dbus.bus
import dbus.exceptions
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

BLUEZ = "org.bluez"
OM_IFACE = "org.freedesktop.DBus.ObjectManager"
PROPS_IFACE = "org.freedesktop.DBus.Properties"
INTROSPECT_IFACE = "org.freedesktop.DBus.Introspectable"
ADAPTER_IFACE = "org.bluez.Adapter1"
DEVICE_IFACE = "org.bluez.Device1"
SERVICE_IFACE = "org.bluez.GattService1"
CHAR_IFACE = "org.bluez.GattCharacteristic1"
DESC_IFACE = "org.bluez.GattDescriptor1"
ADAPTER_PATH = "/org/bluez/hci0"

# Delays that let a client see the intermediate states (Connected before ServicesResolved).
CONNECT_MS = 20
RESOLVE_MS = 40
FOUND_MS = 30


def uuid128(short: str) -> str:
    return f"0000{short.lower()}-0000-1000-8000-00805f9b34fb"


def ascii_hex(text: str) -> str:
    return text.encode().hex()


def plain(value):
    """A D-Bus value as plain Python, for logging as JSON."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dbus.Boolean):
        return bool(value)
    if isinstance(value, (int, float)):
        return value if isinstance(value, float) else int(value)
    return str(value)


def out(line: str) -> None:
    print(line, flush=True)


class BluezError(dbus.exceptions.DBusException):
    def __init__(self, name: str, message: str):
        super().__init__(message, name=f"org.bluez.Error.{name}")


# (service uuid16, [(characteristic uuid16, flags, initial value as hex)])
HRM_SERVICES = [
    ("180d", [("2a37", ["notify"], ""), ("2a38", ["read"], "01")]),
    ("180f", [("2a19", ["read", "notify"], "55")]),
    (
        "180a",
        [
            ("2a29", ["read"], ascii_hex("Mock Sensors Ltd")),
            ("2a24", ["read"], ascii_hex("HRM-1")),
            ("2a25", ["read"], ascii_hex("SN-0001") + "00"),  # NUL padding, as some straps send
            ("2a26", ["read"], ascii_hex("1.2.3")),
        ],
    ),
]
POWER_SERVICES = [
    ("1818", [("2a63", ["notify"], ""), ("2a65", ["read"], "00000000"), ("2a5d", ["read"], "05")]),
    ("180f", [("2a19", ["read"], "40")]),
    ("180a", [("2a29", ["read"], ascii_hex("Mock Power Co")), ("2a24", ["read"], ascii_hex("PM-2"))]),
]
KEYBOARD_SERVICES = [("1812", [("2a4d", ["read", "notify"], "00")])]

DEVICES = [
    dict(address="AA:BB:CC:DD:EE:01", name="HRM Mock", appearance=0x0341, rssi=-58, adv=["180d"],
         known=True, services=HRM_SERVICES),
    dict(address="AA:BB:CC:DD:EE:02", name="Power Mock", appearance=0x0484, rssi=-70, adv=["1818"],
         known=False, services=POWER_SERVICES),
    dict(address="AA:BB:CC:DD:EE:03", name="Keyboard Mock", appearance=0x03C1, rssi=-65, adv=["1812"],
         known=False, services=KEYBOARD_SERVICES),
]


class Exported(dbus.service.Object):
    """An object with one BlueZ interface and org.freedesktop.DBus.Properties; on the bus only once
    the mock exports it."""

    def __init__(self, mock: "Mock", path: str, iface: str, props: dict):
        self.mock = mock
        self.path = path
        self.iface = iface
        self.props = props
        super().__init__()

    def interfaces(self) -> dict:
        return {
            INTROSPECT_IFACE: dbus.Dictionary({}, signature="sv"),
            PROPS_IFACE: dbus.Dictionary({}, signature="sv"),
            self.iface: dbus.Dictionary(self.props, signature="sv"),
        }

    def update(self, **changes) -> None:
        self.props.update(changes)
        self.PropertiesChanged(self.iface, dbus.Dictionary(changes, signature="sv"), dbus.Array([], signature="s"))

    @dbus.service.method(PROPS_IFACE, in_signature="ss", out_signature="v")
    def Get(self, iface, name):
        if iface != self.iface or name not in self.props:
            raise dbus.exceptions.DBusException("No such property", name="org.freedesktop.DBus.Error.InvalidArgs")
        return self.props[name]

    @dbus.service.method(PROPS_IFACE, in_signature="s", out_signature="a{sv}")
    def GetAll(self, iface):
        return dbus.Dictionary(self.props if iface == self.iface else {}, signature="sv")

    @dbus.service.method(PROPS_IFACE, in_signature="ssv")
    def Set(self, iface, name, value):
        raise dbus.exceptions.DBusException("Property is read-only", name="org.freedesktop.DBus.Error.PropertyReadOnly")

    @dbus.service.signal(PROPS_IFACE, signature="sa{sv}as")
    def PropertiesChanged(self, iface, changed, invalidated):
        pass


class Root(dbus.service.Object):
    def __init__(self, mock: "Mock"):
        self.mock = mock
        super().__init__(mock.bus, "/")

    @dbus.service.method(OM_IFACE, out_signature="a{oa{sa{sv}}}")
    def GetManagedObjects(self):
        out("call GetManagedObjects /")
        return dbus.Dictionary(
            {path: obj.interfaces() for path, obj in self.mock.objects.items()}, signature="oa{sa{sv}}"
        )

    @dbus.service.signal(OM_IFACE, signature="oa{sa{sv}}")
    def InterfacesAdded(self, path, interfaces):
        pass

    @dbus.service.signal(OM_IFACE, signature="oas")
    def InterfacesRemoved(self, path, interfaces):
        pass


class Adapter(Exported):
    FILTER_KEYS = {"UUIDs": "as", "RSSI": "n", "Pathloss": "q", "Transport": "s", "DuplicateData": "b",
                   "Discoverable": "b", "Pattern": "s", "AutoConnect": "b"}

    def __init__(self, mock: "Mock", powered: bool):
        super().__init__(mock, ADAPTER_PATH, ADAPTER_IFACE, {
            "Address": dbus.String("00:11:22:33:44:55"),
            "AddressType": dbus.String("public"),
            "Name": dbus.String("mock"),
            "Alias": dbus.String("mock"),
            "Class": dbus.UInt32(0),
            "Powered": dbus.Boolean(powered),
            "Discoverable": dbus.Boolean(False),
            "Pairable": dbus.Boolean(True),
            "Discovering": dbus.Boolean(False),
            "UUIDs": dbus.Array([], signature="s"),
        })
        self.filters: dict[str, dict] = {}  # client → its filter (empty: none set)
        self.sessions: set[str] = set()  # clients with a discovery session
        self.watches: dict[str, object] = {}

    def merged_filter(self):
        """UUIDs of all sessions merged; None when any session has no UUID filter (finds everything)."""
        uuids: set[str] = set()
        for client in self.sessions:
            wanted = self.filters.get(client, {}).get("UUIDs")
            if not wanted:
                return None
            uuids.update(u.lower() for u in wanted)
        return uuids

    def finds(self, spec: dict) -> bool:
        if not self.sessions or not spec.get("in_range", True):
            return False
        uuids = self.merged_filter()
        return uuids is None or bool(uuids & {uuid128(u) for u in spec["adv"]})

    def _watch(self, client: str) -> None:
        if client in self.watches or client.startswith("mock:"):
            return

        def gone(owner, client=client):
            if owner == "":
                self.sessions.discard(client)
                self.filters.pop(client, None)
                self.watches.pop(client, None)
                out(f"event client-gone {client}")
                self._discovering()

        self.watches[client] = self.mock.bus.watch_name_owner(client, gone)

    def _discovering(self) -> None:
        want = bool(self.sessions)
        if bool(self.props["Discovering"]) != want:
            self.update(Discovering=dbus.Boolean(want))

    @dbus.service.method(ADAPTER_IFACE, in_signature="a{sv}", sender_keyword="sender")
    def SetDiscoveryFilter(self, props, sender=None):
        out(f"call SetDiscoveryFilter {ADAPTER_PATH} {json.dumps(plain(props), sort_keys=True)}")
        for key, value in props.items():
            if key not in self.FILTER_KEYS:
                raise BluezError("InvalidArguments", f"Invalid arguments in method call: {key}")
            if key == "Transport" and value not in ("auto", "bredr", "le"):
                raise BluezError("InvalidArguments", "Invalid arguments in method call")
        if props:
            self.filters[sender] = dict(props)
        else:
            self.filters.pop(sender, None)
        self._watch(sender)

    @dbus.service.method(ADAPTER_IFACE, sender_keyword="sender")
    def StartDiscovery(self, sender=None):
        out(f"call StartDiscovery {ADAPTER_PATH}")
        if not self.props["Powered"]:
            raise BluezError("NotReady", "Resource Not Ready")
        if sender in self.sessions:
            raise BluezError("InProgress", "Operation already in progress")
        self.sessions.add(sender)
        self._watch(sender)
        self._discovering()
        GLib.timeout_add(FOUND_MS, self.mock.discover)

    @dbus.service.method(ADAPTER_IFACE, sender_keyword="sender")
    def StopDiscovery(self, sender=None):
        out(f"call StopDiscovery {ADAPTER_PATH}")
        if sender not in self.sessions:
            raise BluezError("Failed", "No discovery started")
        self.sessions.discard(sender)
        self._discovering()

    @dbus.service.method(ADAPTER_IFACE, out_signature="as")
    def GetDiscoveryFilters(self):
        return dbus.Array(list(self.FILTER_KEYS), signature="s")

    @dbus.service.method(ADAPTER_IFACE, in_signature="o")
    def RemoveDevice(self, path):
        out(f"call RemoveDevice {path}")
        device = self.mock.device_at(str(path))
        if device is None:
            raise BluezError("DoesNotExist", "Does Not Exist")
        self.mock.forget(device)


class Characteristic(Exported):
    def __init__(self, mock, device, path, service_path, short, flags, value_hex):
        props = {
            "UUID": dbus.String(uuid128(short)),
            "Service": dbus.ObjectPath(service_path),
            "Value": dbus.Array(bytes.fromhex(value_hex), signature="y"),
            "Flags": dbus.Array(flags, signature="s"),
        }
        if "notify" in flags or "indicate" in flags:
            props["Notifying"] = dbus.Boolean(False)
        super().__init__(mock, path, CHAR_IFACE, props)
        self.device = device
        self.short = short
        self.flags = flags
        self.clients: set[str] = set()

    def _value(self) -> bytes:
        return bytes(self.props["Value"])

    def notify(self, value: bytes) -> None:
        """A notification from the device: bluetoothd updates Value, which emits PropertiesChanged."""
        self.update(Value=dbus.Array(value, signature="y"))

    @dbus.service.method(CHAR_IFACE, in_signature="a{sv}", out_signature="ay")
    def ReadValue(self, options):
        out(f"call ReadValue {self.device.address} {self.short}")
        if not self.device.connected:
            raise BluezError("Failed", "Not connected")
        if "read" not in self.flags:
            raise BluezError("NotPermitted", "Read not permitted")
        offset = int(options.get("offset", 0))
        if offset > len(self._value()):
            raise BluezError("InvalidOffset", "Invalid offset")
        return dbus.Array(self._value()[offset:], signature="y")

    @dbus.service.method(CHAR_IFACE, in_signature="aya{sv}")
    def WriteValue(self, value, options):
        out(f"call WriteValue {self.device.address} {self.short} {bytes(value).hex()}")
        if not self.device.connected:
            raise BluezError("Failed", "Not connected")
        if "write" not in self.flags and "write-without-response" not in self.flags:
            raise BluezError("NotPermitted", "Write not permitted")
        self.update(Value=dbus.Array(bytes(value), signature="y"))

    @dbus.service.method(CHAR_IFACE, sender_keyword="sender")
    def StartNotify(self, sender=None):
        out(f"call StartNotify {self.device.address} {self.short}")
        if not self.device.connected:
            raise BluezError("NotConnected", "Not Connected")
        if "notify" not in self.flags and "indicate" not in self.flags:
            raise BluezError("NotSupported", "Operation is not supported")
        if sender in self.clients:
            raise BluezError("InProgress", "Operation already in progress")
        self.clients.add(sender)
        if not self.props["Notifying"]:
            self.update(Notifying=dbus.Boolean(True))

    @dbus.service.method(CHAR_IFACE, sender_keyword="sender")
    def StopNotify(self, sender=None):
        out(f"call StopNotify {self.device.address} {self.short}")
        if sender not in self.clients:
            raise BluezError("Failed", "No notify session started")
        self.clients.discard(sender)
        if not self.clients:
            self.update(Notifying=dbus.Boolean(False))

    @dbus.service.method(CHAR_IFACE, in_signature="a{sv}", out_signature="hq")
    def AcquireNotify(self, options):
        raise BluezError("NotSupported", "Operation is not supported")


class Device(Exported):
    def __init__(self, mock: "Mock", spec: dict):
        self.spec = spec
        self.address = spec["address"]
        path = f"{ADAPTER_PATH}/dev_{self.address.replace(':', '_')}"
        super().__init__(mock, path, DEVICE_IFACE, {
            "Address": dbus.String(self.address),
            "AddressType": dbus.String("random"),
            "Name": dbus.String(spec["name"]),
            "Alias": dbus.String(spec["name"]),
            "Appearance": dbus.UInt16(spec["appearance"]),
            "Paired": dbus.Boolean(False),
            "Bonded": dbus.Boolean(False),
            "Trusted": dbus.Boolean(False),
            "Blocked": dbus.Boolean(False),
            "LegacyPairing": dbus.Boolean(False),
            "Connected": dbus.Boolean(False),
            "UUIDs": dbus.Array([uuid128(u) for u in spec["adv"]], signature="s"),
            "Adapter": dbus.ObjectPath(ADAPTER_PATH),
            "ServicesResolved": dbus.Boolean(False),
        })
        self.refusals = 0
        self.connecting = False
        self.gatt: list[Exported] = []
        self.connects = 0

    @property
    def connected(self) -> bool:
        return bool(self.props["Connected"])

    def characteristic(self, short: str) -> Characteristic | None:
        for obj in self.gatt:
            if isinstance(obj, Characteristic) and obj.short == short:
                return obj
        return None

    def heard(self) -> None:
        """An advertisement: bluetoothd sets RSSI (which cached devices lack until heard)."""
        self.update(RSSI=dbus.Int16(self.spec["rssi"]))

    def _export_gatt(self) -> None:
        handle = 0x000A
        for service_short, characteristics in self.spec["services"]:
            service_path = f"{self.path}/service{handle:04x}"
            service = Exported(self.mock, service_path, SERVICE_IFACE, {
                "UUID": dbus.String(uuid128(service_short)),
                "Primary": dbus.Boolean(True),
                "Device": dbus.ObjectPath(self.path),
                "Includes": dbus.Array([], signature="o"),
            })
            self.gatt.append(service)
            handle += 1
            for short, flags, value in characteristics:
                char_path = f"{service_path}/char{handle:04x}"
                char = Characteristic(self.mock, self, char_path, service_path, short, flags, value)
                self.gatt.append(char)
                handle += 2
                if "notify" in flags or "indicate" in flags:
                    desc = Exported(self.mock, f"{char_path}/desc{handle:04x}", DESC_IFACE, {
                        "UUID": dbus.String(uuid128("2902")),
                        "Characteristic": dbus.ObjectPath(char_path),
                        "Value": dbus.Array([], signature="y"),
                    })
                    self.gatt.append(desc)
                    handle += 1
            handle = (handle + 0x10) & ~0x0F | 0x0A
        for obj in self.gatt:
            self.mock.export(obj)

    def _remove_gatt(self) -> None:
        for obj in reversed(self.gatt):
            self.mock.unexport(obj)
        self.gatt = []

    def link_down(self, reason: str) -> None:
        """What bluetoothd does when an LE link ends: services unresolved, GATT objects gone,
        then Connected false and the Disconnected signal."""
        if not self.connected:
            return
        self.update(ServicesResolved=dbus.Boolean(False))
        self._remove_gatt()
        self.update(Connected=dbus.Boolean(False))
        self.Disconnected(f"org.bluez.Reason.{reason}", reason)
        out(f"event disconnected {self.address}")

    @dbus.service.signal(DEVICE_IFACE, signature="ss")
    def Disconnected(self, reason, message):
        pass

    @dbus.service.method(DEVICE_IFACE, async_callbacks=("reply", "error"))
    def Connect(self, reply, error):
        out(f"call Connect {self.address}")
        if self.connected:
            error(BluezError("AlreadyConnected", "Already Connected"))
            return
        if self.connecting:
            error(BluezError("InProgress", "In Progress"))
            return
        self.connecting = True

        def connected():
            self.connecting = False
            if self.mock.devices.get(self.address) is not self:
                error(BluezError("Failed", "Device removed"))
                return False
            if self.refusals > 0 or not self.spec.get("in_range", True):
                self.refusals = max(0, self.refusals - 1)
                error(BluezError("Failed", "le-connection-abort-by-local"))
                out(f"event connect-failed {self.address}")
                return False
            self.connects += 1
            self.update(Connected=dbus.Boolean(True))
            reply()
            out(f"event connected {self.address} {self.connects}")
            GLib.timeout_add(RESOLVE_MS, resolved)
            return False

        def resolved():
            if not self.connected:
                return False
            self._export_gatt()
            all_uuids = sorted(set(uuid128(u) for u in self.spec["adv"])
                               | {uuid128(s) for s, _ in self.spec["services"]})
            self.update(UUIDs=dbus.Array(all_uuids, signature="s"))
            self.update(ServicesResolved=dbus.Boolean(True))
            out(f"event resolved {self.address}")
            return False

        GLib.timeout_add(CONNECT_MS, connected)

    @dbus.service.method(DEVICE_IFACE)
    def Disconnect(self):
        out(f"call Disconnect {self.address}")
        if not self.connected:
            raise BluezError("NotConnected", "Not Connected")
        self.link_down("Local")

    @dbus.service.method(DEVICE_IFACE)
    def Pair(self):
        raise BluezError("NotSupported", "Operation is not supported")

    @dbus.service.method(DEVICE_IFACE)
    def CancelPairing(self):
        raise BluezError("DoesNotExist", "Does Not Exist")


class Mock:
    def __init__(self, bus, powered: bool, adapter: bool):
        self.bus = bus
        self.powered = powered
        self.with_adapter = adapter
        self.objects: dict[str, Exported] = {}
        self.devices: dict[str, Device] = {}
        self.root = Root(self)
        self.adapter: Adapter | None = None
        self.start()

    # -- bluetoothd's life --

    def start(self, announce: bool = False) -> None:
        """bluetoothd starting: it owns the name, then registers its adapter and the devices it
        remembers (announced with InterfacesAdded when it restarts under running clients)."""
        self.bus.request_name(BLUEZ, dbus.bus.NAME_FLAG_DO_NOT_QUEUE)
        if self.with_adapter:
            self.adapter = Adapter(self, self.powered)
            self.export(self.adapter, announce)
            for spec in DEVICES:
                if spec["known"]:
                    device = Device(self, spec)
                    self.devices[device.address] = device
                    self.export(device, announce)

    def vanish(self) -> None:
        for obj in list(self.objects.values()):
            obj.remove_from_connection()
        self.objects.clear()
        self.devices.clear()
        self.adapter = None
        self.bus.release_name(BLUEZ)

    # -- the object tree --

    def export(self, obj: Exported, announce: bool = True) -> None:
        obj.add_to_connection(self.bus, obj.path)
        self.objects[obj.path] = obj
        if announce:
            self.root.InterfacesAdded(obj.path, obj.interfaces())

    def unexport(self, obj: Exported) -> None:
        if self.objects.pop(obj.path, None) is None:
            return
        self.root.InterfacesRemoved(obj.path, dbus.Array(list(obj.interfaces()), signature="s"))
        obj.remove_from_connection()

    def device_at(self, path: str) -> Device | None:
        return next((d for d in self.devices.values() if d.path == path), None)

    def discover(self) -> bool:
        """A running discovery hears every device in range that the merged filter lets through."""
        if self.adapter is None:
            return False
        for spec in DEVICES:
            if not self.adapter.finds(spec):
                continue
            device = self.devices.get(spec["address"])
            if device is not None:
                if not device.connected:
                    device.heard()
                continue
            device = Device(self, spec)
            device.props["RSSI"] = dbus.Int16(spec["rssi"])
            self.devices[device.address] = device
            self.export(device)
            out(f"event found {device.address}")
        return False

    def forget(self, device: Device) -> None:
        device.link_down("Local")
        self.devices.pop(device.address, None)
        self.unexport(device)
        out(f"event removed {device.address}")

    # -- control --

    def command(self, line: str) -> None:
        words = line.split()
        if not words:
            return
        cmd, args = words[0], words[1:]
        try:
            if cmd == "quit":
                out("ok quit")
                self.loop.quit()
                return
            if cmd == "vanish":
                self.vanish()
            elif cmd == "restart":
                self.start(announce=True)
            elif cmd == "other-client-discovery":
                if self.adapter is None:
                    raise ValueError("no adapter")
                self.adapter.sessions.add("mock:other-client")
                self.adapter._discovering()
                GLib.timeout_add(FOUND_MS, self.discover)
            else:
                spec = next((s for s in DEVICES if s["address"] == args[0].upper()), None) if args else None
                if spec is None:
                    raise ValueError(f"no such device in {line!r}")
                device = self.devices.get(spec["address"])
                if cmd == "appear":
                    spec["in_range"] = True
                    GLib.timeout_add(FOUND_MS, self.discover)
                elif device is None:
                    raise ValueError(f"{spec['address']} is not exported")
                elif cmd == "notify":
                    char = device.characteristic(args[1].lower())
                    if char is None:
                        raise ValueError(f"{args[1]} not resolved on {device.address}")
                    if not char.props.get("Notifying"):
                        raise ValueError(f"{args[1]} on {device.address} is not notifying")
                    char.notify(bytes.fromhex("".join(args[2:])))
                elif cmd == "set":
                    char = device.characteristic(args[1].lower())
                    if char is None:
                        raise ValueError(f"{args[1]} not resolved on {device.address}")
                    char.props["Value"] = dbus.Array(bytes.fromhex("".join(args[2:])), signature="y")
                elif cmd == "drop":
                    if not device.connected:
                        raise ValueError(f"{device.address} is not connected")
                    device.link_down("Remote")
                elif cmd == "remove":
                    spec["in_range"] = False
                    self.forget(device)
                elif cmd == "rssi":
                    spec["rssi"] = int(args[1])
                    device.heard()
                elif cmd == "refuse":
                    device.refusals = int(args[1])
                else:
                    raise ValueError(f"unknown command {cmd}")
            out(f"ok {line}")
        except (ValueError, IndexError, dbus.exceptions.DBusException) as e:
            out(f"error {line}: {e}")

    def on_stdin(self, fd, condition) -> bool:
        chunk = os.read(fd, 65536)
        if not chunk:
            self.loop.quit()
            return False
        self.pending += chunk
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            self.command(line.decode().strip())
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", required=True, help="the private bus, unix:path=…")
    parser.add_argument("--powered-off", action="store_true", help="the adapter is powered off")
    parser.add_argument("--no-adapter", action="store_true", help="bluetoothd runs without an adapter")
    opts = parser.parse_args()

    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(opts.address)
    mock = Mock(bus, powered=not opts.powered_off, adapter=not opts.no_adapter)
    mock.loop = GLib.MainLoop()
    mock.pending = b""
    GLib.io_add_watch(sys.stdin.fileno(), GLib.IO_IN | GLib.IO_HUP, mock.on_stdin)
    out("ready")
    mock.loop.run()


if __name__ == "__main__":
    main()
