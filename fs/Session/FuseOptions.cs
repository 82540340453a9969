namespace Appliance.Fs.Session;

/// <summary>How a filesystem is mounted and served.</summary>
public sealed record FuseOptions
{
    /// <summary>The source shown in /proc/mounts.</summary>
    public string FsName { get; init; } = "appliance";

    /// <summary>The subtype: the mount shows as fuse.SUBTYPE.</summary>
    public string Subtype { get; init; } = "appliance";

    /// <summary>Let the kernel check permissions against the attributes (mount option default_permissions).</summary>
    public bool DefaultPermissions { get; init; } = true;

    /// <summary>Let users other than the mounter use the mount (allow_other; non-root needs user_allow_other in
    /// /etc/fuse.conf).</summary>
    public bool AllowOther { get; init; } = true;

    public bool ReadOnly { get; init; }

    /// <summary>Request-reading threads, each with its own cloned /dev/fuse descriptor.</summary>
    public int Threads { get; init; } = Math.Clamp(Environment.ProcessorCount, 2, 8);

    /// <summary>The deadline of every filesystem call; past it the kernel gets ETIMEDOUT.</summary>
    public TimeSpan OperationTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Kernel write-back caching of writes (FUSE_WRITEBACK_CACHE): faster, but the filesystem sees writes
    /// late and must not rely on the open flags of the handle a write comes through.</summary>
    public bool WritebackCache { get; init; }

    /// <summary>Mount through fusermount3 even as root (it is always used when not root).</summary>
    public bool UseFusermount { get; init; }

    /// <summary>How long mounting waits for the kernel's INIT to be answered.</summary>
    public TimeSpan InitTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Where the session reports problems (a backend bug, a failed reply); stderr when null.</summary>
    public Action<string>? Log { get; init; }
}
