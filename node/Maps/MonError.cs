namespace Appliance.Maps;

/// <summary>What kind of mistake a refused command made; the CLI maps these to exit codes in one place.</summary>
public enum MonErrorCode
{
    /// <summary>A value is malformed or out of range, or an option or field is unknown.</summary>
    InvalidArgument = 1,
    /// <summary>The pool, OSD, entity or monitor named does not exist.</summary>
    NotFound = 2,
    /// <summary>The name is taken.</summary>
    AlreadyExists = 3,
    /// <summary>The command is valid but the cluster's state forbids it now (removing the last monitor, ...).</summary>
    Refused = 4,
}

/// <summary>A command refused, with a message that says what to do instead.</summary>
public sealed record MonError(MonErrorCode Code, string Message)
{
    public override string ToString() => $"{Code}: {Message}";
}

/// <summary>An increment does not follow the map it is applied to (wrong epoch or version, missing entity). This is
/// a bug or a mixed-up log, never a user's mistake.</summary>
public sealed class MapSequenceException(string message) : Exception(message);
