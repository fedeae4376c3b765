module github.com/gotasks/gotasks

go 1.26
