using System.Globalization;

namespace Appliance.Cli.Common;

/// <summary>Parses and prints sizes the way people write them: 4096, 512K, 64M, 10G, 1T, 1.5G (binary units).</summary>
public static class ByteSize
{
    public static bool TryParse(string text, out long bytes)
    {
        bytes = 0;
        var s = text.Trim();
        if (s.Length == 0)
        {
            return false;
        }
        long multiplier = 1;
        var unit = char.ToUpperInvariant(s[^1]);
        if (unit == 'B')
        {
            s = s[..^1];
            if (s.Length > 0 && s[^1] is 'i' or 'I')
            {
                s = s[..^1];
            }
            unit = s.Length > 0 ? char.ToUpperInvariant(s[^1]) : '\0';
        }
        switch (unit)
        {
            case 'K': multiplier = 1L << 10; break;
            case 'M': multiplier = 1L << 20; break;
            case 'G': multiplier = 1L << 30; break;
            case 'T': multiplier = 1L << 40; break;
            case 'P': multiplier = 1L << 50; break;
        }
        if (multiplier != 1)
        {
            s = s[..^1];
        }
        if (long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var whole))
        {
            if (whole > long.MaxValue / multiplier)
            {
                return false;
            }
            bytes = whole * multiplier;
            return true;
        }
        if (multiplier > 1 && decimal.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var fraction)
            && fraction >= 0 && fraction <= long.MaxValue / multiplier)
        {
            bytes = (long)(fraction * multiplier);
            return true;
        }
        return false;
    }

    public static long Parse(string text, string what) =>
        TryParse(text, out var bytes)
            ? bytes
            : throw new CliException(ExitCodes.Usage, $"{what} '{text}' is not a size; write it like 4096, 512K, 64M, 10G or 1T.");

    public static string Format(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        double value = bytes;
        var i = 0;
        while (value >= 1024 && i < units.Length - 1)
        {
            value /= 1024;
            i++;
        }
        return i == 0 ? $"{bytes} B" : string.Create(CultureInfo.InvariantCulture, $"{value:0.##} {units[i]}");
    }
}
