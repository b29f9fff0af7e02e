#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension BlueZBackend {
    /// The operator-facing error for a failed start: what is wrong on this host and what to do about
    /// it, since the installer reads this in `pulsegate doctor` or the journal, not the code.
    static func describe(_ error: BlueZStartError, busAddress: String?) -> SensorBackendError {
        let bus = busAddress.map { "the D-Bus bus at \($0)" } ?? "the D-Bus system bus"
        switch error {
        case .noAdapter(let requested?, let found):
            let names = found.map { String($0.split(separator: "/").last ?? "") }
            let others = names.isEmpty ? "bluetoothd has no adapter" : "bluetoothd has \(names.joined(separator: ", "))"
            return SensorBackendError(
                backend: backendName, .notFound,
                "Bluetooth adapter \(requested) not found (\(others)); check `bluetoothctl list` and the adapter setting"
            )
        case .noAdapter(nil, _):
            return SensorBackendError(
                backend: backendName, .notFound,
                "bluetoothd has no Bluetooth adapter: plug one in, or check `rfkill list` and `bluetoothctl list`")
        case .bus(let failure, let stage):
            return describe(failure, stage: stage, bus: bus)
        }
    }

    private static func describe(_ failure: DBusError, stage: String, bus: String) -> SensorBackendError {
        if let code = failure.errno {
            if code == EACCES || code == EPERM {
                return SensorBackendError(
                    backend: backendName, .permission,
                    "this user may not connect to \(bus) (\(failure.message)); check the socket's permissions")
            }
            return SensorBackendError(
                backend: backendName, .unavailable,
                "cannot reach \(bus) (\(failure.message)): is dbus running? (`systemctl status dbus`)")
        }
        switch failure.name {
        case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner":
            return SensorBackendError(
                backend: backendName, .unavailable,
                "bluetoothd is not running (no org.bluez on \(bus)): install the bluez package and start it with "
                    + "`systemctl enable --now bluetooth`, or use the hci backend")
        case "org.freedesktop.DBus.Error.AccessDenied", "org.bluez.Error.NotAuthorized", "org.bluez.Error.NotPermitted":
            return SensorBackendError(
                backend: backendName, .permission,
                "access denied while \(stage) (\(failure.message)): the D-Bus policy for org.bluez "
                    + "(/etc/dbus-1/system.d/bluetooth.conf) must allow this user; run pulsegate as root or as a user "
                    + "in the group that policy names (`bluetooth` on Debian)")
        case "org.bluez.Error.NotReady":
            return SensorBackendError(
                backend: backendName, .unavailable,
                "the Bluetooth adapter is powered off or blocked (\(stage)): `rfkill unblock bluetooth` and "
                    + "`bluetoothctl power on`, or set AutoEnable=true in /etc/bluetooth/main.conf")
        case "org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Timeout":
            return SensorBackendError(
                backend: backendName, .unavailable,
                "bluetoothd did not answer while \(stage); check `systemctl status bluetooth`")
        case DBusError.closed.name:
            return SensorBackendError(
                backend: backendName, .unavailable, "the connection to \(bus) closed while \(stage)")
        default:
            return SensorBackendError(backend: backendName, .unavailable, "\(stage) failed: \(failure)")
        }
    }
}
