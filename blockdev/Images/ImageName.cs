using System.Text;

namespace Appliance.BlockDev.Images;

/// <summary>
/// Image names: `pool/image` style paths of components made of letters, digits, '.', '_', '-', '+'. No component
/// is empty, '.' or '..', or starts with '.', so a name can never leave its catalog's directory (path traversal)
/// and hidden files stay ours. Pure.
/// </summary>
public static class ImageName
{
    public const int MaxComponentBytes = 255;
    public const int MaxNameBytes = 1024;

    /// <summary>Null when the name is valid, otherwise what is wrong with it (a sentence for the user).</summary>
    public static string? Problem(string name)
    {
        if (name.Length == 0)
        {
            return "an image name cannot be empty";
        }
        if (Encoding.UTF8.GetByteCount(name) > MaxNameBytes)
        {
            return $"an image name is at most {MaxNameBytes} bytes";
        }
        foreach (var component in name.Split('/'))
        {
            if (component.Length == 0)
            {
                return $"'{name}' has an empty path component (a leading, trailing or doubled '/')";
            }
            if (component[0] == '.')
            {
                return $"'{name}': a name component cannot start with '.' (that also rules out '.' and '..')";
            }
            if (component.Length > MaxComponentBytes)
            {
                return $"'{name}': a name component is at most {MaxComponentBytes} characters";
            }
            foreach (var c in component)
            {
                if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or '+'))
                {
                    return $"'{name}' contains '{(char.IsControl(c) ? $"\\u{(int)c:x4}" : c)}'; use letters, digits, '.', '_', '-', '+' and '/' between components";
                }
            }
        }
        return null;
    }

    public static bool IsValid(string name) => Problem(name) is null;
}
