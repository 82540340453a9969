using System.Globalization;

namespace Appliance.Fs.Meta;

/// <summary>
/// Where a filesystem's metadata lives in its metadata pool: every object is placed by the locator key (the
/// filesystem's name), so all of them share one PG whatever the pool's pg_num. The superblock object is the target
/// of every metadata call (its PG's primary runs the call with the object's lock held, which orders every metadata
/// operation of the filesystem); its data is the <see cref="Superblock"/> record, its omap the orphan list (key: "o." and
/// the inode number in 16 hex digits, empty value), the mounts (key: "m." and the mount's id, written by the
/// mount itself), the mounts' leases (key: "lease." and the mount's id, value: a <see cref="MountLease"/>) and the
/// file locks (key: "l." and the inode number in 16 hex digits, value: the inode's <see cref="LockTable"/>). An inode's object holds the <see cref="Inode"/> record as data and,
/// for a directory, its entries as omap (key: the name, value: a <see cref="Dentry"/>).
/// </summary>
public static class MetaObjects
{
    public const string SuperSuffix = ".super";

    /// <summary>The OSD's method class that runs <see cref="MetaOps"/>, and its two methods: <see cref="RunMethod"/>
    /// (any operation, logged) and <see cref="QueryMethod"/> (read-only operations, not logged).</summary>
    public const string ClassName = "fsmeta";
    public const string RunMethod = "run";
    public const string QueryMethod = "query";

    public static string Locator(string fs) => fs;

    public static string Super(string fs) => fs + SuperSuffix;

    public static string Inode(string fs, ulong ino) => $"{fs}.i.{ino:x16}";

    /// <summary>The object every mount watches: a mount that changed metadata notifies on it which names and inodes
    /// changed, so the others drop them from their caches (not the superblock: a notify must not hold the lock that
    /// orders metadata operations).</summary>
    public static string Watch(string fs) => fs + ".watch";

    public const string OrphanPrefix = "o.";
    public const string MountPrefix = "m.";
    public const string LeasePrefix = "lease.";
    public const string LockPrefix = "l.";

    public static string LeaseKey(string mount) => LeasePrefix + mount;

    public static string LockKey(ulong ino) => LockPrefix + ino.ToString("x16", CultureInfo.InvariantCulture);

    public static ulong ParseLockKey(string key) =>
        key.Length == LockPrefix.Length + 16 && key.StartsWith(LockPrefix, StringComparison.Ordinal)
        && ulong.TryParse(key.AsSpan(LockPrefix.Length), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var v)
            ? v
            : throw new MetaFormatException($"lock key {key} is not an inode number");

    public static string OrphanKey(ulong ino) => OrphanPrefix + ino.ToString("x16", CultureInfo.InvariantCulture);

    public static ulong ParseOrphanKey(string key) =>
        key.Length == OrphanPrefix.Length + 16 && key.StartsWith(OrphanPrefix, StringComparison.Ordinal)
        && ulong.TryParse(key.AsSpan(OrphanPrefix.Length), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var v)
            ? v
            : throw new MetaFormatException($"orphan key {key} is not an inode number");

    /// <summary>The filesystem a superblock object belongs to, or null when the name is not a superblock's.</summary>
    public static string? FsOfSuper(string objectName) =>
        objectName.EndsWith(SuperSuffix, StringComparison.Ordinal) && objectName.Length > SuperSuffix.Length
            ? objectName[..^SuperSuffix.Length]
            : null;
}
