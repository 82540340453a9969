namespace Appliance.Crush.Model;

/// <summary>
/// One compiled rule step. For take, <see cref="Arg1"/> is the item id (a shadow bucket's id for `take B class C`);
/// for choose steps, Arg1 is the count and Arg2 the type id; for set_* steps Arg1 is the value.
/// </summary>
public readonly record struct CrushStep(RuleOp Op, int Arg1, int Arg2, string? ItemName = null, string? ItemClass = null);

/// <summary>A compiled rule.</summary>
public sealed class CrushRule
{
    internal CrushRule(int id, string name, int type, int minSize, int maxSize, CrushStep[] steps)
    {
        Id = id;
        Name = name;
        Type = type;
        MinSize = minSize;
        MaxSize = maxSize;
        StepsArray = steps;
    }

    public int Id { get; }
    public string Name { get; }
    public int Type { get; }
    public int MinSize { get; }
    public int MaxSize { get; }
    public IReadOnlyList<CrushStep> Steps => StepsArray;
    internal CrushStep[] StepsArray { get; }
}
