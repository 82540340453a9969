using System.Globalization;

namespace Appliance.Monitor.Maps;

/// <summary>The type of a configuration option's value.</summary>
public enum ConfigType
{
    /// <summary>A whole number.</summary>
    Int,
    /// <summary>A duration in whole seconds (a plain number, or with an s/m/h/d suffix).</summary>
    Seconds,
    /// <summary>true/false (also yes/no, on/off, 1/0).</summary>
    Bool,
    /// <summary>A real number (ratios).</summary>
    Double,
}

/// <summary>A known option: its name, type, default, inclusive range and what it does.</summary>
public sealed record ConfigOption(string Name, ConfigType Type, string Default, double Min, double Max, string Description)
{
    /// <summary>The canonical text of <paramref name="value"/>, or an error saying what is accepted.</summary>
    public string Canonicalize(string value, out string? error)
    {
        error = null;
        var text = value.Trim();
        switch (Type)
        {
            case ConfigType.Bool:
                switch (text.ToLowerInvariant())
                {
                    case "true" or "yes" or "on" or "1":
                        return "true";
                    case "false" or "no" or "off" or "0":
                        return "false";
                    default:
                        error = $"{Name} is true or false, not '{value}'";
                        return "";
                }
            case ConfigType.Double:
                if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) || !double.IsFinite(d))
                {
                    error = $"{Name} is a number, not '{value}'";
                    return "";
                }
                if (d < Min || d > Max)
                {
                    error = $"{Name} must be between {Min.ToString(CultureInfo.InvariantCulture)} and {Max.ToString(CultureInfo.InvariantCulture)}, not {value}";
                    return "";
                }
                return d.ToString("R", CultureInfo.InvariantCulture);
            default:
                var multiplier = 1L;
                if (Type == ConfigType.Seconds && text.Length > 1 && char.IsAsciiLetter(text[^1]))
                {
                    multiplier = char.ToLowerInvariant(text[^1]) switch
                    {
                        's' => 1,
                        'm' => 60,
                        'h' => 3600,
                        'd' => 86400,
                        _ => 0,
                    };
                    text = text[..^1];
                }
                if (multiplier == 0 || !long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n))
                {
                    error = Type == ConfigType.Seconds
                        ? $"{Name} is a number of seconds (optionally with s, m, h or d), not '{value}'"
                        : $"{Name} is a whole number, not '{value}'";
                    return "";
                }
                var v = (double)n * multiplier;
                if (v < Min || v > Max)
                {
                    error = $"{Name} must be between {Min.ToString(CultureInfo.InvariantCulture)} and {Max.ToString(CultureInfo.InvariantCulture)}{(Type == ConfigType.Seconds ? " seconds" : "")}, not {value}";
                    return "";
                }
                return ((long)v).ToString(CultureInfo.InvariantCulture);
        }
    }
}

/// <summary>
/// The options the central configuration accepts. Unknown names are refused, so a typo never silently does nothing.
/// Defaults follow Ceph where it has the option, except failure detection, which is much faster: heartbeats every
/// 0.5 s with a 3 s grace (Ceph: 6 s and 20 s), since heartbeats travel on their own path and a client should wait
/// seconds, not tens of seconds, for a hung OSD; beacons every 5 s with a 20 s timeout (Ceph: 300 s and 900 s), so a
/// hung OSD that no peer watches (a one-OSD cluster) is still marked down within half a minute.
/// </summary>
public static class ConfigOptions
{
    private static readonly ConfigOption[] Table =
    [
        new("mon_osd_down_out_interval", ConfigType.Seconds, "600", 0, 30 * 86400,
            "seconds an OSD stays down before the monitors mark it out (its data is re-replicated); 0 never marks out"),
        new("mon_osd_min_down_reporters", ConfigType.Int, "2", 1, 100,
            "distinct hosts that must report an OSD failed before it is marked down"),
        new("mon_osd_report_timeout", ConfigType.Seconds, "20", 10, 86400,
            "seconds without a beacon after which the monitors mark an OSD down (what notices a hung OSD no peer watches, e.g. the only one)"),
        new("osd_beacon_report_interval", ConfigType.Seconds, "5", 1, 3600,
            "seconds between an OSD's beacons to the monitors (keep well below mon_osd_report_timeout)"),
        new("osd_heartbeat_interval", ConfigType.Double, "0.5", 0.05, 60,
            "seconds (fractions allowed, e.g. 0.5) between an OSD's heartbeat pings to each peer"),
        new("osd_heartbeat_grace", ConfigType.Seconds, "3", 1, 3600,
            "seconds without a heartbeat answer before an OSD reports a peer failed; reports expire after twice this"),
        new("osd_io_stall_timeout", ConfigType.Seconds, "10", 1, 3600,
            "seconds an OSD's own store I/O may stay outstanding before the OSD stops answering heartbeats (a hung disk makes a down OSD); above the grace, so a disk slowed by a burst does not flap the OSD"),
        new("mon_target_pg_per_osd", ConfigType.Int, "100", 1, 1000,
            "placement groups per OSD the automatic pg_num aims at"),
        new("mon_max_pool_pg_num", ConfigType.Int, "65536", 1, 1 << 20,
            "largest pg_num a pool may have"),
        new("osd_pool_default_size", ConfigType.Int, "3", 1, 10,
            "copies of a new replicated pool"),
        new("osd_pool_default_min_size", ConfigType.Int, "0", 0, 10,
            "members a new replicated pool needs up to accept writes; 0 means size - size/2"),
        new("osd_pool_default_erasure_k", ConfigType.Int, "2", 2, 16,
            "data chunks of a new erasure-coded pool"),
        new("osd_pool_default_erasure_m", ConfigType.Int, "1", 1, 8,
            "coding chunks of a new erasure-coded pool"),
        new("mon_osd_full_ratio", ConfigType.Double, "0.95", 0, 1,
            "fraction of an OSD's capacity at which the cluster stops accepting writes"),
        new("mon_osd_nearfull_ratio", ConfigType.Double, "0.85", 0, 1,
            "fraction of an OSD's capacity at which health warns"),
        new("mon_audit_log_max_entries", ConfigType.Int, "10000", 100, 1_000_000,
            "audit entries the monitors keep (the oldest are dropped beyond it)"),
        new("mon_allow_pool_delete", ConfigType.Bool, "true", 0, 1,
            "whether pools may be removed at all"),
        new("mon_min_osdmap_epochs", ConfigType.Int, "500", 10, 100_000,
            "past osdmap epochs a monitor keeps whole (for OSDs that fetch an old epoch and for subscribers that are behind)"),
        new("mon_osd_blocklist_default_expire", ConfigType.Seconds, "3600", 1, 365 * 86400,
            "how long a client instance stays blocklisted when the command names no duration"),
    ];

    public static IReadOnlyDictionary<string, ConfigOption> Known { get; } =
        Table.ToDictionary(o => o.Name, StringComparer.Ordinal);

    public static ConfigOption? Find(string name) => Known.GetValueOrDefault(name);
}
