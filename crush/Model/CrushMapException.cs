namespace Appliance.Crush.Model;

/// <summary>
/// A map text or map definition that cannot be used: a syntax error, an unknown name, a duplicate id, a weight out
/// of range. The message says what is wrong and, when the problem came from a text, where (line and column).
/// </summary>
public sealed class CrushMapException : Exception
{
    public CrushMapException(string message, SourcePosition position = default)
        : base(position.Line == 0 ? message : $"line {position.Line}, column {position.Column}: {message}")
    {
        Position = position;
        Reason = message;
    }

    /// <summary>Where the problem is (0, 0 when it is not tied to a place in a text).</summary>
    public SourcePosition Position { get; }

    /// <summary>The message without the position.</summary>
    public string Reason { get; }
}
