using System.Globalization;
using Appliance.Maps;
using Appliance.Maps.Protocol;

namespace Appliance.Monitor.Maps;

/// <summary>
/// The result of one command: the increment to commit (null when nothing changes), the leader's next
/// <see cref="OsdLiveness"/>, the error if refused, a one-line message for the caller, and data for a program (the id
/// `osd create` gave; null for most commands).
/// </summary>
public sealed record MonOutcome(ClusterIncrement? Increment, OsdLiveness Liveness, MonError? Error, string Message, byte[]? Data = null)
{
    public bool Ok => Error is null;
}

/// <summary>
/// The monitors' administrative and OSD-lifecycle operations as pure functions:
/// <c>(state, liveness, command, who, now) → increment | error</c>. They read no clock, no randomness and no I/O, so
/// the leader can compute an increment, propose it through Paxos, and every monitor applying it gets the same state.
/// Every administrative command that changes something carries an audit entry (who, when, what, result) in its
/// increment. Authorization (does <c>who</c> hold the caps for this command) is the daemon's job, before this.
/// </summary>
public static partial class MonOperations
{
    public static MonOutcome Execute(ClusterState state, OsdLiveness liveness, MonCommand command, string who, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(liveness);
        ArgumentNullException.ThrowIfNull(command);
        ArgumentException.ThrowIfNullOrEmpty(who);
        var ctx = new Context(state, liveness, now.ToUnixTimeMilliseconds());
        var result = command switch
        {
            PoolCreate c => PoolCreateOp(ctx, c),
            PoolRemove c => PoolRemoveOp(ctx, c),
            PoolSet c => PoolSetOp(ctx, c),
            OsdBoot c => OsdBootOp(ctx, c),
            OsdBeacon c => OsdBeaconOp(ctx, c),
            OsdFailureReport c => OsdFailureOp(ctx, c),
            OsdFailureCancel c => OsdFailureCancelOp(ctx, c),
            OsdTick => OsdTickOp(ctx),
            ServiceKeyRotate c => ServiceKeyRotateOp(ctx, c),
            OsdOut c => OsdInOutOp(ctx, c.Ids, markIn: false),
            OsdIn c => OsdInOutOp(ctx, c.Ids, markIn: true),
            OsdSetFlag c => OsdSetFlagOp(ctx, c),
            OsdRemove c => OsdRemoveOp(ctx, c),
            AuthAdd c => AuthAddOp(ctx, c),
            AuthCaps c => AuthCapsOp(ctx, c),
            AuthRemove c => AuthRemoveOp(ctx, c),
            ConfigSet c => ConfigSetOp(ctx, c),
            ConfigRemove c => ConfigRemoveOp(ctx, c),
            MonAdd c => MonAddOp(ctx, c),
            MonRemove c => MonRemoveOp(ctx, c),
            OsdAlive c => OsdAliveOp(ctx, c),
            PgTemp c => PgTempOp(ctx, c),
            OsdBlocklistAdd c => BlocklistAddOp(ctx, c),
            OsdBlocklistRemove c => BlocklistRemoveOp(ctx, c),
            OsdCreate c => OsdCreateOp(ctx, c),
            PoolQuotaFlags c => PoolQuotaFlagsOp(ctx, c),
            OsdFullFlags c => OsdFullFlagsOp(ctx, c),
            JoinTokenCreate c => JoinTokenCreateOp(ctx, c),
            JoinConsume c => JoinConsumeOp(ctx, c, who),
            _ => Result.Fail(MonErrorCode.InvalidArgument, $"unknown command {command.GetType().Name}"),
        };
        if (result.Error is not null)
        {
            return new MonOutcome(null, ctx.Liveness, result.Error, result.Error.Message);
        }
        var inc = result.Increment;
        if (inc is not null && !inc.IsEmpty && command.IsAdministrative)
        {
            var entry = new AuditEntry(state.Audit.LastSeq + 1, ctx.NowMs, who, command.Describe(), "ok: " + result.Message);
            inc = inc with { Audit = new AuditIncrement([entry]) };
        }
        return new MonOutcome(inc is null || inc.IsEmpty ? null : inc, ctx.Liveness, null, result.Message, result.Data);
    }

    /// <summary>An audit-only increment recording a refused administrative command, for a daemon that audits
    /// failed attempts too.</summary>
    public static ClusterIncrement AuditRejected(ClusterState state, MonCommand command, string who, DateTimeOffset now, MonError error)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(command);
        ArgumentNullException.ThrowIfNull(error);
        return new ClusterIncrement(Audit: new AuditIncrement(
            [new AuditEntry(state.Audit.LastSeq + 1, now.ToUnixTimeMilliseconds(), who, command.Describe(), $"error {error.Code}: {error.Message}")]));
    }

    private sealed class Context(ClusterState state, OsdLiveness liveness, long nowMs)
    {
        public ClusterState State { get; } = state;
        public OsdMap Osd => State.Osd;
        public ConfigDb Config => State.Config;
        public long NowMs { get; } = nowMs;
        public OsdLiveness Liveness { get; set; } = liveness;
    }

    private readonly record struct Result(ClusterIncrement? Increment, MonError? Error, string Message, byte[]? Data = null)
    {
        public static Result Fail(MonErrorCode code, string message) => new(null, new MonError(code, message), message);

        public static Result Unchanged(string message) => new(null, null, message);

        public static Result Changed(ClusterIncrement increment, string message) => new(increment, null, message);
    }

    private static OsdMapIncrement OsdInc(Context ctx, IReadOnlyList<OsdInfo>? osds = null, IReadOnlyList<PoolInfo>? pools = null,
        IReadOnlyList<int>? poolRemovals = null, int? poolMax = null, string? crushText = null) =>
        new(ctx.Osd.Epoch + 1, ctx.NowMs, osds ?? [], [], pools ?? [], poolRemovals ?? [], poolMax, crushText);

    /// <summary>Pool, host and monitor names: 1-64 of [A-Za-z0-9_.-], starting with a letter or digit.</summary>
    private static MonError? CheckName(string what, string? name, int max = 64)
    {
        if (string.IsNullOrEmpty(name) || name.Length > max || !char.IsAsciiLetterOrDigit(name[0])
            || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or '-'))
        {
            return new MonError(MonErrorCode.InvalidArgument,
                $"{what} '{name}' is not valid: use 1 to {max} letters, digits, '_', '.' or '-', starting with a letter or digit");
        }
        return null;
    }

    private static bool TryInt(string text, out int value) =>
        int.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out value);

    /// <summary>A byte count: digits with an optional binary suffix K, M, G, T, P (also Ki, KiB, KB...).</summary>
    internal static bool TryParseBytes(string text, out ulong value)
    {
        value = 0;
        var t = text.Trim();
        var digits = 0;
        while (digits < t.Length && char.IsAsciiDigit(t[digits]))
        {
            digits++;
        }
        if (digits == 0 || !ulong.TryParse(t.AsSpan(0, digits), NumberStyles.None, CultureInfo.InvariantCulture, out var n))
        {
            return false;
        }
        var shift = t[digits..].ToUpperInvariant() switch
        {
            "" or "B" => 0,
            "K" or "KI" or "KB" or "KIB" => 10,
            "M" or "MI" or "MB" or "MIB" => 20,
            "G" or "GI" or "GB" or "GIB" => 30,
            "T" or "TI" or "TB" or "TIB" => 40,
            "P" or "PI" or "PB" or "PIB" => 50,
            _ => -1,
        };
        if (shift < 0 || (shift > 0 && n > (ulong.MaxValue >> shift)))
        {
            return false;
        }
        value = n << shift;
        return true;
    }
}
