using System.Text;

namespace IlgpuLlm.Cli.Reports;

/// <summary>
/// A plain-text table in Markdown's pipe syntax with padded columns, the format llama-bench prints:
/// aligned in a terminal, and pasted into a Markdown file it renders as a table.
/// </summary>
public sealed class MarkdownTable
{
    readonly (string Header, bool RightAligned)[] columns;
    readonly List<string[]> rows = [];

    public MarkdownTable(params (string Header, bool RightAligned)[] columns)
    {
        this.columns = columns;
    }

    public void AddRow(params string[] cells)
    {
        if (cells.Length != columns.Length)
            throw new ArgumentException($"{cells.Length} cells for {columns.Length} columns");
        rows.Add(cells);
    }

    public int RowCount => rows.Count;

    public override string ToString()
    {
        var widths = columns.Select((c, i) => Math.Max(c.Header.Length, rows.Select(r => r[i].Length).DefaultIfEmpty(0).Max())).ToArray();
        var text = new StringBuilder();
        void Line(Func<int, string> cell)
        {
            text.Append('|');
            for (int i = 0; i < columns.Length; i++)
                text.Append(' ').Append(cell(i)).Append(" |");
            text.AppendLine();
        }
        string Pad(string value, int i) => columns[i].RightAligned ? value.PadLeft(widths[i]) : value.PadRight(widths[i]);
        Line(i => Pad(columns[i].Header, i));
        Line(i => columns[i].RightAligned ? new string('-', widths[i] - 1) + ":" : new string('-', widths[i]));
        foreach (var row in rows)
            Line(i => Pad(row[i], i));
        return text.ToString();
    }
}
